"""FastDeploy's own code as an implementation, read from a checkout at run time (never copied in).

The kernel half: ``kernel_source`` reads each slot-mapping op's kernels and declaration from the checkout's
``.cu`` files, ``host_wrapper`` executes the op's host wrapper (its launch shape, allocations, arguments),
``compiled_ops`` compiles and runs the ops on the GPU, ``kernel_fidelity`` compares them with the suite's CUDA
models, and ``op_test_vectors`` runs FastDeploy's own op tests against them.
"""
