"""Shared set-up for the pytest-benchmark suites."""
