"""The collector and test builder shared by the pytest property modules (one per process)."""

from __future__ import annotations

from collections.abc import Callable

from properties import config
from properties.collector import Collector
from properties.suite import build_property

_collector: Collector | None = None


def collector() -> Collector:
    global _collector
    if _collector is None or _collector.config is not config.current():
        _collector = Collector(config.current())
    return _collector


def property_test(name: str) -> Callable[[], None]:
    """The hypothesis test of ``name`` under the options and profile pytest was started with."""
    return build_property(name, config.current(), collector(), profile=config.current_profile())
