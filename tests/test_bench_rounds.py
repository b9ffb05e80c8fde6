"""The end-to-end benchmarks' verdicts (:mod:`bench.rounds`, ``bench.suite._e2e``): ratios are taken within
each round, where the machine ran both configurations at the same speed, and their median decides."""

from __future__ import annotations

import pytest

from bench import rounds
from bench.looplag import LoopLag
from bench.remote import Result
from bench.suite import _e2e

RAW, LIBRARY, BOT = "raw", "library", "bot"


def run(name: str, per_second: float, cpu_each: float = 0.01) -> Result:
    commands = 100
    return Result(name, commands, commands / per_second, [0.1] * commands, 4 * commands, 0.5, cpu_each * commands)


def one_by_one(name: str, latency: float) -> Result:
    return Result(name, 30, 30 * latency, [latency] * 30, 4 * 30, 0.5, 0.01 * 30)


def quiet_rounds(*latencies: tuple[float, float, float]) -> list[Result]:
    """One round per (raw, library, bot) latency of one command at a time."""
    return [
        r for raw, lib, bot in latencies for r in (one_by_one(RAW, raw), one_by_one(LIBRARY, lib), one_by_one(BOT, bot))
    ]


def burst_rounds(*speeds: tuple[float, float, float]) -> list[Result]:
    """One round per (raw, library, bot) throughput, in the order the benchmarks run them."""
    return [r for raw, lib, bot in speeds for r in (run(RAW, raw), run(LIBRARY, lib), run(BOT, bot))]


def test_ratios_are_taken_within_each_round_and_the_median_decides() -> None:
    # The machine halves its speed in the second round and doubles it in the third: every round, the bot
    # makes 0.9 of the library's throughput, and that is the verdict.
    results = burst_rounds((300, 200, 180), (150, 100, 90), (600, 400, 360))
    ratio = rounds.paired(results, BOT, LIBRARY)
    assert ratio.each == pytest.approx([0.9, 0.9, 0.9])
    assert ratio.median == pytest.approx(0.9)


def test_a_fast_minute_for_one_configuration_does_not_decide() -> None:
    # The library happened to run in the machine's fastest minute once. Keeping each one's best run would
    # give 180 / 400 = 0.45; round by round the bot made 0.9 of the library twice.
    results = burst_rounds((300, 400, 180), (300, 200, 180), (300, 200, 180))
    assert rounds.paired(results, BOT, LIBRARY).median == pytest.approx(0.9)


def test_one_disturbed_round_does_not_move_the_median() -> None:
    results = burst_rounds((300, 200, 180), (300, 200, 40), (300, 200, 170), (300, 200, 190), (300, 200, 176))
    ratio = rounds.paired(results, BOT, LIBRARY)
    assert ratio.median == pytest.approx(0.88)
    assert str(ratio) == "0.88 (0.20-0.95)"
    assert rounds.median(results, BOT, rounds.per_second) == pytest.approx(176)


def test_rounds_must_pair_up() -> None:
    results = [*burst_rounds((300, 200, 180)), run(BOT, 170)]
    with pytest.raises(ValueError, match="one run each per round"):
        rounds.paired(results, BOT, LIBRARY)
    with pytest.raises(ValueError):
        rounds.paired(results, "nobody", LIBRARY)


def test_the_end_to_end_rows_are_ratios_to_both_floors_without_a_goal() -> None:
    """Issue 23 retired the end-to-end goals: the rows stay as regression guards, each ratio taken round by round."""
    results = burst_rounds((300, 200, 150), (300, 200, 150), (300, 200, 150))
    lag, library_lag, floor_lag = LoopLag(), LoopLag(), LoopLag()
    lag.lags, library_lag.lags, floor_lag.lags = [0.001] * 10, [0.003] * 10, [0.002] * 10
    quiet = quiet_rounds((0.008, 0.010, 0.0135), (0.004, 0.005, 0.00675))  # the machine twice as fast in round 2
    figures = _e2e("telegram", results, quiet, (RAW, LIBRARY, BOT), (floor_lag, library_lag, lag))
    against_library, against_raw = figures[0], figures[1]
    assert against_library.ratio.startswith("0.75") and against_raw.ratio.startswith("0.50")
    assert "library alone: 0.67" in against_raw.goal
    [latency] = [f for f in figures if "one /draw at a time" in f.benchmark]
    assert latency.ratio == "1.35 (1.35-1.35)" and latency.floor == "7.5"
    assert all(f.met is None for f in figures[:-1])
    assert figures[-1].met is True  # the loop lag row keeps its goal: 1 ms, beside both floors' lag
    assert figures[-1].figure.startswith("1.0 ms") and figures[-1].floor == "library 3.0 ms, raw 2.0 ms"


def test_the_pipeline_verdict_is_the_median_of_its_rounds_ratios() -> None:
    from bench.pipeline import Rounds, Run, figures

    lag = LoopLag()
    lag.lags = [0.001] * 10
    summary = lag.summary()

    def core(per_second: float) -> Run:
        return Run("core", 120, 120 / per_second, summary)

    # Round by round the core makes 0.6, 0.4 and 0.55 of the floor: the median, 0.55, meets the goal, although
    # the best core run over the best floor run (60 / 150) would not.
    floors = [Run("floor", 120, 120 / speed) for speed in (100, 150, 40)]
    pipeline, lag_row = figures(Rounds(floors, [core(60), core(60), core(22)]))
    assert (pipeline.ratio, pipeline.met, pipeline.figure, pipeline.floor) == (
        "0.55 (0.40-0.60)",
        True,
        "60.0",
        "100.0",
    )
    assert lag_row.met
