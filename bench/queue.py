"""Does scheduling cost stay flat as the queue grows?

    python -m bench.queue [--depths 1000,5000,10000] [--jobs-per-user 5]

For each depth, ``depth / jobs-per-user`` users queue ``jobs-per-user`` jobs each, in a random order, while the
image service is slow (two jobs run and never finish on their own). Measured on the loop's thread
(``time.thread_time``), with :class:`bot.jobs.relay.Relay` as the position callback like the core's:

- **fill**: CPU to queue all of them (a user with a job waiting arriving again is the pattern that used to
  re-simulate the whole queue);
- **arrival / start**: the mean cost of one more arrival, and of one start (a run finishes, the next begins),
  at that depth;
- **pass**: the periodic report of queue positions after a start moved every job up a place, with the tasks it
  spawns: the loop time it costs a second;
- **memory**: bytes the scheduler holds per queued job (``tracemalloc``).

Ratios are against the smallest depth of the same run. Goals (issue 24): an arrival at 10,000 queued costs at
most 5x one at 1,000, filling 10,000 takes under 2 s of CPU, a pass costs at most 5 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.support import Figure, print_figures
from bot.jobs.relay import Relay
from bot.jobs.scheduler import Scheduler

GOAL_ARRIVAL_RATIO = 5.0
GOAL_FILL_SECONDS = 2.0
GOAL_PASS_MS = 5.0
SAMPLES = 300


@dataclass(frozen=True, slots=True)
class Depth:
    depth: int
    fill_s: float
    arrival_us: float
    start_us: float
    pass_ms: float
    bytes_per_job: float


async def _nothing() -> None:
    return None


async def measure(depth: int, per_user: int, seed: int = 1) -> Depth:
    relay = Relay()
    gates: dict[int, asyncio.Event] = {}

    async def run(job_id: int) -> None:
        await gates.setdefault(job_id, asyncio.Event()).wait()

    def on_position(job_id: int, position: int) -> None:
        relay.post(job_id, _nothing)

    scheduler = Scheduler("bench", 2, run, on_position, report_every=3600)
    scheduler.start()
    users = max(1, depth // per_user)
    arrivals = [(f"user{u}", n) for u in range(users) for n in range(per_user)]
    random.Random(seed).shuffle(arrivals)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    began = time.thread_time()
    for job_id, (owner, _) in enumerate(arrivals):
        scheduler.enqueue(job_id, owner)
    fill = time.thread_time() - began
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    await _settle()

    # One more arrival, from users who already wait (the old worst case) and from newcomers, then taken out;
    # the median of a few rounds (a garbage collection can land in any one of them).
    rounds = []
    for _ in range(5):
        extra = range(len(arrivals), len(arrivals) + SAMPLES)
        began = time.thread_time()
        for job_id in extra:
            scheduler.enqueue(job_id, f"user{job_id % users}" if job_id % 2 else f"new{job_id}")
        rounds.append((time.thread_time() - began) / SAMPLES)
        for job_id in extra:
            scheduler.remove(job_id)
        await _settle()
    arrival = statistics.median(rounds)

    # Starts: a running job finishes and the next one begins (a small queue keeps some for the passes below).
    starts = min(SAMPLES, max(1, depth // 4))
    began = time.thread_time()
    for _ in range(starts):
        gates.setdefault(min(scheduler.running), asyncio.Event()).set()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
    start = (time.thread_time() - began) / starts
    await _settle()

    # The periodic pass after a start moved everyone, with the relay tasks it spawns.
    passes = []
    for _ in range(5):
        gates.setdefault(min(scheduler.running), asyncio.Event()).set()
        await _settle()
        began = time.thread_time()
        scheduler.report_positions()
        await _settle()
        passes.append(time.thread_time() - began)
    await scheduler.stop()
    await relay.close()
    return Depth(depth, fill, arrival * 1e6, start * 1e6, max(passes) * 1e3, held / depth)


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def figures(depths: list[int], per_user: int) -> list[Figure]:
    results = [asyncio.run(measure(depth, per_user)) for depth in depths]
    base = results[0]
    out = []
    for r in results:
        ratio = r.arrival_us / base.arrival_us
        last = r is results[-1]
        out += [
            Figure(
                f"queue {r.depth:,}: one arrival (us)",
                f"{r.arrival_us:.1f}",
                f"{base.arrival_us:.1f} at {base.depth:,}",
                f"{ratio:.2f}",
                f"<= {GOAL_ARRIVAL_RATIO:.0f}x" if last else "-",
                ratio <= GOAL_ARRIVAL_RATIO if last else None,
            ),
            Figure(
                f"queue {r.depth:,}: one start (us)",
                f"{r.start_us:.1f}",
                f"{base.start_us:.1f} at {base.depth:,}",
                f"{r.start_us / base.start_us:.2f}",
                "-",
                None,
            ),
            Figure(
                f"queue {r.depth:,}: fill (s of CPU)",
                f"{r.fill_s:.3f}",
                "-",
                "-",
                f"< {GOAL_FILL_SECONDS:.0f} s" if last else "-",
                r.fill_s < GOAL_FILL_SECONDS if last else None,
            ),
            Figure(
                f"queue {r.depth:,}: position pass (ms)",
                f"{r.pass_ms:.2f}",
                "-",
                "-",
                f"<= {GOAL_PASS_MS:.0f} ms",
                r.pass_ms <= GOAL_PASS_MS,
            ),
            Figure(f"queue {r.depth:,}: memory (bytes/job)", f"{r.bytes_per_job:,.0f}", "-", "-", "-", None),
        ]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depths", default="1000,5000,10000", help="queue depths (default 1000,5000,10000)")
    parser.add_argument("--jobs-per-user", type=int, default=5, help="jobs each user queues (default 5)")
    args = parser.parse_args(argv)
    rows = figures([int(d) for d in args.depths.split(",")], args.jobs_per_user)
    print_figures(rows)
    return 0 if all(f.met is not False for f in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
