"""``dsa-validate bench``: what one step's slot mapping costs on each code path, per batch shape.

``shapes`` builds the batches, ``cuda_timer`` times the CUDA kernels with device events (eager and
replayed from a captured CUDA graph), ``host_timer`` times the Paddle models with the host's clock,
``traffic`` gives the bytes each path must move and the bandwidth floor, ``report`` turns the samples
into the table, the JSON and the plot, and ``cli`` is the subcommand. What each timer's timed region
holds, and what it leaves out, is said in its module docstring.
"""
