"""Shared test configuration.

Tests marked ``network`` need the public package index (through this machine's configured
proxy). They run by default; when the index cannot be reached at all they are skipped with
that reason (listed by ``-rs``), so an outage is visible rather than silent.
"""

from __future__ import annotations

import functools
import ssl
import urllib.request

import pytest

PYPI_PROBE = "https://pypi.org/simple/pip/"


@functools.cache
def pypi_reachable() -> str:
    """ "" when reachable, else why not."""
    try:
        context = ssl.create_default_context()
        with urllib.request.urlopen(PYPI_PROBE, timeout=30, context=context) as response:
            response.read(1)
    except OSError as exc:
        return f"public index unreachable: {exc}"
    return ""


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("network") is not None:
        reason = pypi_reachable()
        if reason:
            pytest.skip(reason)
