"""FastDeploy's own code as an implementation, read from a checkout at run time (never copied in).

The Python half: ``fastdeploy:PATH`` for a checkout or snapshot folder. ``checkout`` finds the files and the code
shape, ``source_exec`` runs the checkout's own Python lines with real Paddle, ``op_provider`` supplies the custom
ops those lines call (compiled kernels where CUDA is, the suite's models otherwise, always named), ``patching``
makes a patched copy, ``checkout_spec`` is what the seam resolves, ``fidelity`` and ``op_tests`` (over ``op_test_files``) prove the suite's
models against the checkouts' code and FastDeploy's own op tests.

The kernel half: ``kernel_source`` reads each slot-mapping op's kernels and declaration from the checkout's
``.cu`` files, ``host_wrapper`` executes the op's host wrapper (its launch shape, allocations, arguments),
``compiled_ops`` compiles and runs the ops on the GPU, ``kernel_fidelity`` compares them with the suite's CUDA
models, and ``op_test_vectors`` runs FastDeploy's own op tests against them.
"""
