"""The growth benchmarks (issue 24) run, at sizes small enough for the suite, and measure what they say."""

from __future__ import annotations

from bench import history, queue


def test_the_queue_benchmark_fills_each_depth_and_reports_every_figure() -> None:
    rows = queue.figures([50, 100], 5)
    names = [row.benchmark for row in rows]
    assert names[:5] == [
        "queue 50: one arrival (us)",
        "queue 50: one start (us)",
        "queue 50: fill (s of CPU)",
        "queue 50: position pass (ms)",
        "queue 50: memory (bytes/job)",
    ]
    assert len(rows) == 10 and all(float(row.figure.replace(",", "")) > 0 for row in rows)


def test_the_history_benchmark_builds_prunes_and_admits() -> None:
    rows = history.figures([0, 2000], 200)
    by_name = {row.benchmark: row for row in rows}
    pruning = next(name for name in by_name if name.startswith("history 2,000: admissions/s pruning"))
    assert int(pruning.split("pruning ")[1].split(" ")[0].replace(",", "")) > 0  # old jobs went meanwhile
    assert float(by_name["history 2,000: start (ms)"].figure) > 0
