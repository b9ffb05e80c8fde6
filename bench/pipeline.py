"""Images per second through the whole core, against a floor loop doing only the unavoidable work.

    python -m bench.pipeline [--jobs 120] [--n 1] [--users 30] [--concurrency 8] [--rounds 5]

* ``floor``: a plain loop that, per picture, decodes the provider's base64 (validating), checks the PNG
  header (signature and IHDR size), decodes every pixel (Pillow's ``load()``: the only proof that a picture
  is whole, see :func:`bot.backends.images.inspect`) and hands the bytes on. Nothing else can be skipped.
* ``core``: ``--jobs`` ``/draw`` commands from ``--users`` users submitted at once to a real
  :class:`bot.core.Core` on a fresh SQLite file: parse, validate, admit (quotas in SQLite), schedule
  (``--concurrency`` = ``SDBOT_BACKEND_CONCURRENCY``), the backend call (an instant backend that decodes
  prepared 1024x1024 PNGs from base64 in a worker thread, as real backends do), the image check, delivery to
  an in-memory sink, and the job's record. The clock stops when the last job is recorded done.

Both handle the same pictures (``--n`` per command). The figure is images per second; the ratio is core /
floor (goal: at least 0.5), taken within each round, floor and core run one after the other, and the verdict
is the median over ``--rounds`` rounds (the machine's speed drifts: see :mod:`bench.rounds`). A ticker
measures the event loop's lag during the core runs; the worst round's counts.
"""

from __future__ import annotations

import argparse
import asyncio
import binascii
import io
import logging
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PIL import Image

from bench.looplag import LagSummary, LoopLag
from bench.support import (
    Figure,
    InstantBackend,
    MemorySink,
    Ratio,
    bench_settings,
    encoded_photos,
    machine,
    png_header_ok,
    print_table,
)
from bot.core import ChatRef, Core, UserRef

SIZE = (1024, 1024)
GOAL = 0.5


@dataclass(frozen=True, slots=True)
class Run:
    name: str
    images: int
    seconds: float
    lag: LagSummary | None = None

    @property
    def per_second(self) -> float:
        return self.images / self.seconds


def run_floor(encoded: list[str], jobs: int, n: int) -> Run:
    width, height = SIZE
    handed_on = 0
    begin = time.perf_counter()
    for job in range(jobs):
        for i in range(n):
            data = binascii.a2b_base64(encoded[(job + i) % len(encoded)], strict_mode=True)
            if not png_header_ok(data, width, height):
                raise AssertionError("prepared image has the wrong header")
            with Image.open(io.BytesIO(data)) as picture:
                picture.load()
            handed_on += len(data)
    return Run("floor (decode, check, pixels, hand on)", jobs * n, time.perf_counter() - begin)


async def run_core(encoded: list[str], jobs: int, n: int, users: int, concurrency: int) -> Run:
    with tempfile.TemporaryDirectory(prefix="sdbot-bench-") as tmp:
        settings = bench_settings(Path(tmp) / "bench.db", backend_concurrency=concurrency)
        core = await Core.open(settings, InstantBackend(encoded))
        try:
            warm = MemorySink(1)
            core.register_sink("telegram", warm)
            await core.start()
            # One job first, so imports, thread pools and SQLite's caches are not part of the figure.
            await core.submit(UserRef("telegram", "1"), ChatRef("telegram", "1", False), "/draw warm up", {})
            await core.wait_idle()
            sink = MemorySink(jobs)
            core.register_sink("telegram", sink)
            people = [UserRef("telegram", str(100 + u), "en", f"user {u}") for u in range(users)]
            chats = [ChatRef("telegram", str(100 + u), False) for u in range(users)]
            text = f"/draw a lighthouse at dusk, oil painting --style Anime --size {SIZE[0]}x{SIZE[1]} --n {n}"
            async with LoopLag(callbacks=True) as lag:
                begin = time.perf_counter()
                await asyncio.gather(
                    *(
                        core.submit(people[j % users], chats[j % users], text, {"chat_id": 100 + j % users})
                        for j in range(jobs)
                    )
                )
                await sink.done.wait()
                await core.wait_idle()  # the last job's record too
                seconds = time.perf_counter() - begin
            if sink.failed or sink.images != jobs * n:
                raise AssertionError(f"core run lost images: {sink.images} of {jobs * n}, failed {sink.failed}")
            return Run("core (parse ... record)", sink.images, seconds, lag.summary())
        finally:
            await core.close()


@dataclass(frozen=True, slots=True)
class Rounds:
    """Each round's floor and core run, in round order."""

    floors: list[Run]
    cores: list[Run]

    @property
    def ratio(self) -> Ratio:
        return Ratio([c.per_second / f.per_second for f, c in zip(self.floors, self.cores, strict=True)])

    @property
    def lag(self) -> LagSummary:
        """The core runs' worst p99 lag."""
        return max((r.lag for r in self.cores if r.lag is not None), key=lambda lag: lag.p99_ms)


def median_rate(runs: list[Run]) -> float:
    return statistics.median(r.per_second for r in runs)


async def measure(args: argparse.Namespace) -> Rounds:
    """``--rounds`` rounds of the floor, then the core."""
    encoded = await asyncio.to_thread(encoded_photos, *SIZE)
    rounds = Rounds([], [])
    for _ in range(args.rounds):
        rounds.floors.append(await asyncio.to_thread(run_floor, encoded, args.jobs, args.n))
        rounds.cores.append(await run_core(encoded, args.jobs, args.n, args.users, args.concurrency))
    return rounds


def figures(rounds: Rounds) -> list[Figure]:
    ratio, lag = rounds.ratio, rounds.lag
    return [
        Figure(
            "pipeline overhead (images/s)",
            f"{median_rate(rounds.cores):.1f}",
            f"{median_rate(rounds.floors):.1f}",
            str(ratio),
            f">= {GOAL:.2f}",
            ratio.median >= GOAL,
        ),
        Figure(
            "loop lag p99, pipeline",
            f"{lag.p99_ms:.1f} ms (longest callback {lag.longest_ms or 0:.0f} ms)",
            "-",
            "-",
            "<= 20 ms",
            lag.met,
        ),
    ]


async def run(args: argparse.Namespace) -> list[Figure]:
    logging.disable(logging.INFO)  # one line per job is noise here
    try:
        rounds = await measure(args)
    finally:
        logging.disable(logging.NOTSET)
    return figures(rounds)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.pipeline", description=(__doc__ or "").split("\n", 1)[0], epilog="see bench/pipeline.py"
    )
    p.add_argument("--jobs", type=int, default=120, help="/draw commands submitted at once (default 120)")
    p.add_argument("--n", type=int, default=1, choices=range(1, 5), help="pictures per command (default 1)")
    p.add_argument("--users", type=int, default=30, help="users the commands come from (default 30)")
    p.add_argument("--concurrency", type=int, default=8, help="SDBOT_BACKEND_CONCURRENCY (default 8)")
    p.add_argument("--rounds", type=int, default=5, help="rounds; the median ratio counts (default 5)")
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    logging.disable(logging.INFO)
    rounds = asyncio.run(measure(args))
    print(machine())
    print(f"{args.jobs} commands of --n {args.n} at {SIZE[0]}x{SIZE[1]} from {args.users} users; "
          f"backend concurrency {args.concurrency}; medians over {args.rounds} rounds")  # fmt: skip
    rows = [[runs[0].name, str(runs[0].images), f"{median_rate(runs):.1f}"] for runs in (rounds.floors, rounds.cores)]
    print_table(rows, header=["configuration", "images each round", "images/s (median)"])
    print(f"core / floor, round by round: x{rounds.ratio} (goal: median >= {GOAL}); worst round's {rounds.lag}")


if __name__ == "__main__":
    main()
