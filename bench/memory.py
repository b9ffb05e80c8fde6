"""Peak memory of many jobs in flight at once, against the bytes of the pictures themselves.

    python -m bench.memory [--jobs 100] [--n 4] [--size 1024x1024] [--big-jobs 10] [--big-size 2048x2048]

Each configuration runs in a fresh ``python`` subprocess (so nothing of the parent or of an earlier run is
counted): a real :class:`bot.core.Core` with ``SDBOT_BACKEND_CONCURRENCY`` = ``--jobs``, an instant backend
that decodes prepared PNGs from base64 (as a provider's answer carries them) and then holds its pictures until
every job has its own, and an in-memory sink that holds each delivery until every job has reached delivery.
So every job's pictures are in flight together, first in the backend stage, then through the image check,
then in delivery: a copy made by any stage shows.

Measured from ``/proc/self/status``: the baseline is ``VmRSS`` after start-up and one warm-up job (the base64
answers are prepared before it, so they are not counted), then the peak counter is reset
(``/proc/self/clear_refs``) and ``VmHWM`` read after the run. The figure is (peak - baseline) / the raw
image bytes in flight (the decoded PNGs of all jobs); goal: at most 2.5. 1.0 means no copy at all.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.looplag import GOAL_P99_MS, LoopLag
from bench.support import Figure, InstantBackend, MemorySink, bench_settings, encoded_photos, machine, print_table
from bot.core import ChatRef, Core, UserRef

GOAL = 2.5
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class Result:
    label: str
    baseline: int  # bytes
    peak: int
    raw: int  # decoded picture bytes of all jobs
    seconds: float
    lag_p99_ms: float
    longest_ms: float  # the longest single callback on the loop
    peak_reset: bool  # False: VmHWM could not be reset, so the peak may include start-up

    @property
    def ratio(self) -> float:
        return (self.peak - self.baseline) / self.raw


# The child: one configuration in a fresh process -----------------------------------------------------------


def status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak() -> bool:
    """Make VmHWM start again from the current RSS (Linux 4.0+); False when not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return False
    return True


class Gate:
    """``await gate()`` returns once ``count`` callers have arrived."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.arrived = 0
        self.open = asyncio.Event()

    async def __call__(self) -> None:
        self.arrived += 1
        if self.arrived >= self.count:
            self.open.set()
        await self.open.wait()


async def child(jobs: int, n: int, size: str) -> dict[str, Any]:
    width, height = (int(side) for side in size.split("x"))
    encoded = encoded_photos(width, height, count=4)
    with tempfile.TemporaryDirectory(prefix="sdbot-bench-") as tmp:
        settings = bench_settings(Path(tmp) / "bench.db", backend_concurrency=jobs)
        backend = InstantBackend(encoded)
        core = await Core.open(settings, backend)
        try:
            warm = MemorySink(1)
            core.register_sink("telegram", warm)
            await core.start()
            first, here = UserRef("telegram", "1"), ChatRef("telegram", "1", False)
            await core.submit(first, here, f"/draw warm --size {size}", {})
            await core.wait_idle()

            backend.hold = Gate(jobs)
            sink = MemorySink(jobs, hold=Gate(jobs))
            core.register_sink("telegram", sink)
            text = f"/draw a lighthouse at dusk --size {size} --n {n}"
            gc.collect()
            baseline = status_kb("VmRSS")
            peak_reset = reset_peak()
            async with LoopLag(callbacks=True) as lag:
                begin = time.perf_counter()
                for j in range(jobs):
                    user = UserRef("telegram", str(100 + j))
                    await core.submit(user, ChatRef("telegram", str(100 + j), False), text, {"chat_id": 100 + j})
                await sink.done.wait()
                await core.wait_idle()
                seconds = time.perf_counter() - begin
            peak = status_kb("VmHWM")
            if sink.failed or sink.images != jobs * n:
                raise AssertionError(f"lost images: {sink.images} of {jobs * n}, failed {sink.failed}")
        finally:
            await core.close()
    return {
        "baseline": baseline,
        "peak": peak,
        "raw": sink.bytes,
        "seconds": seconds,
        "lag_p99_ms": lag.summary().p99_ms,
        "longest_ms": lag.summary().longest_ms,
        "peak_reset": peak_reset,
    }


# The parent ------------------------------------------------------------------------------------------------


def measure(label: str, jobs: int, n: int, size: str) -> Result:
    command = [sys.executable, "-m", "bench.memory", "--child", "--jobs", str(jobs), "--n", str(n), "--size", size]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SDBOT_", "TELEGRAM_", "DISCORD_"))}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"memory benchmark child failed ({done.returncode}):\n{done.stderr[-3000:]}")
    data = json.loads(done.stdout.strip().splitlines()[-1])
    return Result(label=label, **data)


def configurations(args: argparse.Namespace) -> list[tuple[str, int, int, str]]:
    return [
        (f"{args.jobs} jobs x {args.n} at {args.size}", args.jobs, args.n, args.size),
        (f"{args.big_jobs} jobs x {args.n} at {args.big_size}", args.big_jobs, args.n, args.big_size),
    ]


def figures(results: list[Result]) -> list[Figure]:
    out = []
    for r in results:
        out.append(
            Figure(
                f"memory, {r.label} (peak RSS over baseline)",
                f"{(r.peak - r.baseline) / 2**20:.0f} MiB",
                f"{r.raw / 2**20:.0f} MiB",
                f"{r.ratio:.2f}",
                f"<= {GOAL}",
                r.ratio <= GOAL,
            )
        )
    worst = max(results, key=lambda r: r.lag_p99_ms)
    lag = f"{worst.lag_p99_ms:.1f} ms (longest callback {worst.longest_ms:.0f} ms)"
    out.append(Figure("loop lag p99, memory", lag, "-", "-", "<= 20 ms", worst.lag_p99_ms <= GOAL_P99_MS))
    return out


def run_all(args: argparse.Namespace) -> list[Result]:
    return [measure(*config) for config in configurations(args)]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.memory", description=(__doc__ or "").split("\n", 1)[0])
    p.add_argument("--jobs", type=int, default=100, help="jobs in flight at once (default 100)")
    p.add_argument("--n", type=int, default=4, choices=range(1, 5), help="pictures per job (default 4)")
    p.add_argument("--size", default="1024x1024")
    p.add_argument("--big-jobs", type=int, default=10, help="jobs in flight for the large size (default 10)")
    p.add_argument("--big-size", default="2048x2048")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    logging.disable(logging.INFO)
    if args.child:
        print(json.dumps(asyncio.run(child(args.jobs, args.n, args.size))))
        return
    results = run_all(args)
    print(machine())
    rows = [
        [
            r.label,
            f"{r.baseline / 2**20:.0f}",
            f"{r.peak / 2**20:.0f}",
            f"{r.raw / 2**20:.0f}",
            f"{r.ratio:.2f}",
            f"{r.seconds:.1f}",
            f"{r.lag_p99_ms:.1f}",
        ]
        for r in results
    ]
    header = ["configuration", "baseline MiB", "peak MiB", "images MiB", "(peak-base)/images", "s", "lag p99 ms"]
    print_table(rows, header=header)
    if not all(r.peak_reset for r in results):
        print("note: /proc/self/clear_refs was refused, so peaks include start-up (an overestimate)")
    print(f"goal: (peak - baseline) / images <= {GOAL}")


if __name__ == "__main__":
    main()
