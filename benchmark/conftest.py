"""Shared set-up for the pytest-benchmark suites."""

import pytest


def pytest_collection_modifyitems(items):
    # The per-test time limit in pyproject guards the unit tests; timed runs may be long.
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(0))
