"""pytest plugin (entry point ``pytest11``): options that point the property suite at any baseline,
candidate, block sizes and backend, so ``pytest --pyargs properties`` runs in anyone's CI.

Why options and not environment variables: they show in ``pytest --help`` and in the run's header.
The hypothesis profile is hypothesis' own ``--hypothesis-profile`` (dev when absent); this plugin
only registers the profiles and never loads one globally, so other hypothesis tests are untouched.
Works under pytest-xdist: each worker builds its tests from the same options.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from properties import config as fuzz_config
from properties import profiles
from properties.strategies import SWEEP_BLOCK_SIZES

profiles.register()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("dsa", "DSA slot-mapping property suite")
    group.addoption("--dsa-baseline", default="legacy", help="baseline implementation (default: legacy)")
    group.addoption("--dsa-candidate", default="single_step", help="candidate implementation (default: single_step)")
    group.addoption("--dsa-block-sizes", default="64",
                    help=f"comma-separated block sizes, or 'sweep' for {','.join(map(str, SWEEP_BLOCK_SIZES))}")
    group.addoption("--dsa-backend", default="paddle", help="backend of the built-in paths (default: paddle)")


def pytest_configure(config: pytest.Config) -> None:
    sizes = config.getoption("--dsa-block-sizes")
    profile = config.getoption("--hypothesis-profile", default=None) or "dev"
    fuzz_config.set_current(fuzz_config.FuzzConfig(
        baseline=config.getoption("--dsa-baseline"), candidate=config.getoption("--dsa-candidate"),
        block_sizes=fuzz_config.parse_block_sizes(sizes, sweep=sizes == "sweep"),
        backend=config.getoption("--dsa-backend"), out_dir=Path(config.rootpath) / fuzz_config.DEFAULT_OUT))
    fuzz_config.set_profile(profile if profile in profiles.PROFILE_NAMES else "dev")


def pytest_report_header(config: pytest.Config) -> str:
    cfg = fuzz_config.current()
    return (f"dsa properties: {cfg.baseline} vs {cfg.candidate}, block sizes {','.join(map(str, cfg.block_sizes))}, "
            f"backend {cfg.backend}, profile {fuzz_config.current_profile()}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """When a single-step property fails, reduce its counterexample as ``dsa-validate fuzz`` does and add the
    reduced state's file and ``check`` line to the failure report (hypothesis shows the unreduced draw)."""
    outcome = yield
    report = outcome.get_result()
    module = getattr(getattr(item, "module", None), "__name__", "")
    if call.when != "call" or not report.failed or not module.startswith("properties.test_"):
        return
    from properties._pytest_suite import collector  # noqa: PLC0415 - only a failing property needs these
    from properties.case_reducer import reduce_failure  # noqa: PLC0415

    name = item.name.removeprefix("test_")
    if reduce_failure(name, fuzz_config.current(), collector()):
        stats = collector().stats[name]
        report.sections.append(("dsa reduced counterexample", f"{stats.counterexample['note']}\n"
                                f"{fuzz_config.current().reproduce(stats.path)}"))
