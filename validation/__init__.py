"""dsa-validation: prove that a refactor of DSA slot mapping changes nothing it must not change.

The library holds one batch-state type (``validation.state``), an independent oracle
(``validation.oracle``), faithful models of FastDeploy's historical code paths
(``validation.impls``), the plug-in seam that resolves any implementation by name
(``validation.seam``), and the bit-exact comparison with triage (``validation.compare``).
"""

__version__ = "0.1.0"
