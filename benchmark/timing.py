"""Reading pytest-benchmark's timings in a way that also works as a smoke test."""


def median_seconds(benchmark) -> float:
    """The timed rounds' median, s. NaN under ``--benchmark-disable``, where the benchmarked
    function runs once as a smoke test and nothing is timed (``benchmark.stats`` is None)."""
    return benchmark.stats.stats.median if benchmark.stats is not None else float("nan")
