"""The end-to-end benchmarks' figures over several rounds: medians, and ratios taken round by round.

Every round runs each configuration once, one after the other (floor, library, bot), each against a fresh
fake. This machine's speed drifts by a factor of two over minutes, far more than the differences measured, so a
ratio is only meaningful between runs made close together: :func:`paired` divides the bot's figure by the
floor's *within each round*, and the verdict is the median of those ratios. Keeping each configuration's best
run instead (how these benchmarks used to report) compares whichever configuration happened to meet the
machine's fastest minute, and swung from 0.6 to 1.0 on unchanged code.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Awaitable, Callable, Sequence

from bench.remote import Fakes, Platform, Result
from bench.support import Ratio, print_table

Measure = Callable[[Result], float]
Run = Callable[[Platform, list[int]], Awaitable[Result]]


def add_one_by_one_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--one-by-one", type=int, default=30, help="users sent one at a time after the bursts (0: none; default 30)"
    )
    parser.add_argument("--one-by-one-rounds", type=int, default=5, help="rounds of those (default 5)")


async def alternate(
    host: Fakes, configurations: Sequence[Run], rounds: int, users: int, *, one_at_a_time: bool = False
) -> list[Result]:
    """``rounds`` rounds of every configuration in turn, each against a fresh fake, with ``users`` users, all
    at once or (``one_at_a_time``) each once the previous one has their picture."""
    results: list[Result] = []
    for round_ in range(rounds):
        ids = [10_000 + round_ * users + i for i in range(users)]
        for run in configurations:
            async with host.fake() as fake:
                results.append(await run(fake.one_at_a_time() if one_at_a_time else fake, ids))
    return results


def per_second(result: Result) -> float:
    return result.per_second


def cpu_each(result: Result) -> float:
    """Seconds of the client's CPU (all threads) per command."""
    return result.cpu / result.commands


def p50(result: Result) -> float:
    return result.percentile(50)


def p99(result: Result) -> float:
    return result.percentile(99)


def runs(results: Sequence[Result], name: str) -> list[Result]:
    """``name``'s runs, in round order."""
    return [r for r in results if r.name == name]


def median(results: Sequence[Result], name: str, measure: Measure) -> float:
    return statistics.median(measure(r) for r in runs(results, name))


def paired(results: Sequence[Result], name: str, floor: str, measure: Measure = per_second) -> Ratio:
    """``measure`` of ``name`` over that of ``floor``, within each round (see the module docstring)."""
    mine, theirs = runs(results, name), runs(results, floor)
    if not mine or len(mine) != len(theirs):
        raise ValueError(f"{name} and {floor} need one run each per round ({len(mine)} and {len(theirs)})")
    return Ratio([measure(a) / measure(b) for a, b in zip(mine, theirs, strict=True)])


def print_rounds(results: Sequence[Result], *, unit: str, calls: str, library: str, bot: str) -> None:
    """One row per configuration (medians over the rounds), then each against the first (the raw floor), and
    the bot against the library alone."""
    names = list(dict.fromkeys(r.name for r in results))
    rows = []
    for name in names:
        rows.append(
            [
                name,
                f"{median(results, name, per_second):.1f}",
                f"{median(results, name, p50) * 1000:.0f}",
                f"{median(results, name, p99) * 1000:.0f}",
                f"{median(results, name, lambda r: r.calls / r.commands):.1f}",
                f"{median(results, name, cpu_each) * 1000:.2f}",
                f"{median(results, name, lambda r: r.fake_busy):.0%}",
            ]
        )
    header = ["configuration", unit, "p50 ms", "p99 ms", calls, "client CPU ms each", "fake CPU"]
    print(f"medians over {len(runs(results, names[0]))} rounds")
    print_table(rows, header=header)
    floor = names[0]
    for name in names[1:]:
        print(
            f"{name} / {floor}, round by round: throughput x{paired(results, name, floor)}; "
            f"latency p50 x{paired(results, name, floor, p50)}, p99 x{paired(results, name, floor, p99)}; "
            f"client CPU x{paired(results, name, floor, cpu_each)}"
        )
    print(f"{bot} / {library}, round by round: throughput x{paired(results, bot, library)}")
