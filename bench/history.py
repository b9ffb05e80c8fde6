"""Does a long history slow the bot down?

    python -m bench.history [--history 0,100000,1000000] [--decisions 4000]

For each size, a database holding that many finished jobs of 10,000 users over the last 180 days (built once
per run with plain SQL, usage counters kept by the schema's triggers), then, through the bot's own storage:

- **start**: opening it as ``sdbot run`` does (the integrity check included) and reading the unfinished jobs;
- **admissions**: ``--decisions`` quota decisions, 32 in flight, as :mod:`bench.quota` makes them;
- **while pruning**: the same, while the jobs older than 90 days are deleted in the background as the bot's
  :class:`bot.jobs.retention.Pruner` does it, on the same connection;
- **/cancel**: one user's ``cancel_all`` with nothing queued.

Ratios are against the empty database of the same run. Goals (issue 24): throughput at 1M at least 0.8x the
empty database's, p99 at most 20 ms, while pruning too; the start does not grow with history.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import contextlib

from bench.support import Figure, print_figures
from bot.chats.refs import ChatRef, UserRef
from bot.config import Settings
from bot.draw.request import DrawRequest
from bot.jobs.retention import PAUSE, cutoff_day, prune
from bot.quotas.admission import Quotas
from bot.quotas.rules import Admission, QuotaError
from bot.storage import open_storage

USERS = 10_000
DAYS = 180
RETENTION_DAYS = 90
CONCURRENCY = 32
GOAL_RATIO = 0.8
GOAL_P99_MS = 20.0


@dataclasses.dataclass(frozen=True, slots=True)
class Result:
    history: int
    start_ms: float
    rate: float
    p99_ms: float
    pruning_rate: float
    pruning_p99_ms: float
    pruned: int
    cancel_ms: float


def build(db: Path, jobs: int, now: float) -> None:
    """``jobs`` finished jobs spread over the last :data:`DAYS` days, written straight into the file."""
    asyncio.run(_create(db))
    rng = random.Random(jobs)
    request = DrawRequest("a lighthouse at dawn", n=1).to_json()
    conn = sqlite3.connect(db)
    with conn:
        conn.executemany(
            "INSERT INTO jobs (user_key, platform, chat_key, group_chat, backend, request, route, lang, status, "
            "images, charged, quota_day, seed, delivered, attempts, created_at, started_at, finished_at) VALUES "
            "(?, 'telegram', ?, 1, 'placeholder', ?, '{\"chat_id\":1}', 'en', 'done', 1, 1, ?, 1, 1, 1, ?, ?, ?)",
            (_job(rng, request, now) for _ in range(jobs)),
        )
    conn.close()


def _job(rng: random.Random, request: str, now: float) -> tuple[object, ...]:
    when = now - rng.uniform(0, DAYS * 86400)
    day = time.strftime("%Y-%m-%d", time.gmtime(when))
    user = rng.randrange(USERS)
    return (f"telegram:{user}", f"telegram:-100{user % 50}", request, day, when, when, when + 5)


async def _create(db: Path) -> None:
    storage = await open_storage(db)
    await storage.close()


async def admissions(db: Path, decisions: int, *, pruning: bool, seed: int = 1) -> tuple[float, float]:
    """Decisions per second and p99 (ms) with :data:`CONCURRENCY` in flight."""
    settings = dataclasses.replace(
        Settings.from_env({}, env_file=None), db=db, daily_images=20, rate_per_minute=10_000, max_pending=10_000
    )
    storage = await open_storage(db)
    quotas = Quotas(storage, settings)
    rng = random.Random(seed)
    chat = ChatRef("telegram", "-1001", True)
    request = DrawRequest(prompt="bench", n=1)
    plan = [UserRef("telegram", str(rng.randrange(USERS))) for _ in range(decisions)]
    latencies: list[float] = []

    async def client() -> None:
        while plan:
            admission = Admission(plan.pop(), chat, request, {"chat_id": 1}, "placeholder", "en", 1, exempt=False)
            began = time.perf_counter()
            with contextlib.suppress(QuotaError):
                await quotas.admit(admission)
            latencies.append(time.perf_counter() - began)

    pruner = None
    if pruning:
        before = cutoff_day(time.time(), RETENTION_DAYS, settings.quota_tz)
        pruner = asyncio.create_task(prune(storage, before, pause=PAUSE))
    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(CONCURRENCY)))
    seconds = time.perf_counter() - began
    if pruner is not None:
        pruner.cancel()
        await asyncio.gather(pruner, return_exceptions=True)
    await storage.close()
    latencies.sort()
    return len(latencies) / seconds, latencies[int(len(latencies) * 0.99)] * 1000


async def start_and_cancel(db: Path) -> tuple[float, float]:
    """Milliseconds to open the file as ``sdbot run`` does and read the unfinished jobs; one ``cancel_all``."""
    began = time.perf_counter()
    storage = await open_storage(db)
    await storage.jobs.unfinished()
    start = time.perf_counter() - began
    began = time.perf_counter()
    await storage.jobs.cancel_all("telegram:7")
    cancel = time.perf_counter() - began
    await storage.close()
    return start * 1000, cancel * 1000


def measure(history: int, decisions: int, workdir: Path) -> Result:
    db = workdir / f"history-{history}.db"
    build(db, history, time.time())
    start_ms, cancel_ms = asyncio.run(start_and_cancel(db))
    rate, p99 = asyncio.run(admissions(db, decisions, pruning=False))
    before = _finished(db)
    pruning_rate, pruning_p99 = asyncio.run(admissions(db, decisions, pruning=True, seed=2))
    pruned = before - _finished(db)
    return Result(history, start_ms, rate, p99, pruning_rate, pruning_p99, pruned, cancel_ms)


def _finished(db: Path) -> int:
    """Finished jobs: only pruning takes any away (the admissions add queued ones, and refusals none)."""
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("SELECT count(*) FROM jobs WHERE status = 'done'").fetchone()[0])
    finally:
        conn.close()


def figures(histories: list[int], decisions: int) -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="sdbot-history-") as tmp:
        results = [measure(h, decisions, Path(tmp)) for h in histories]
    base = results[0]
    out = []
    for r in results:
        last = r is results[-1]
        label = f"history {r.history:,}"
        out += [
            Figure(
                f"{label}: start (ms)",
                f"{r.start_ms:.0f}",
                f"{base.start_ms:.0f}",
                f"{r.start_ms / base.start_ms:.2f}",
                "-",
                None,
            ),
            Figure(
                f"{label}: admissions/s (p99 ms)",
                f"{r.rate:,.0f} ({r.p99_ms:.1f})",
                f"{base.rate:,.0f}",
                f"{r.rate / base.rate:.2f}",
                f">= {GOAL_RATIO}x, <= {GOAL_P99_MS:.0f} ms" if last else "-",
                (r.rate / base.rate >= GOAL_RATIO and r.p99_ms <= GOAL_P99_MS) if last else None,
            ),
            Figure(
                f"{label}: admissions/s pruning {r.pruned:,} (p99 ms)",
                f"{r.pruning_rate:,.0f} ({r.pruning_p99_ms:.1f})",
                f"{base.rate:,.0f}",
                f"{r.pruning_rate / base.rate:.2f}",
                f">= {GOAL_RATIO}x, <= {GOAL_P99_MS:.0f} ms" if last else "-",
                (r.pruning_rate / base.rate >= GOAL_RATIO and r.pruning_p99_ms <= GOAL_P99_MS) if last else None,
            ),
            Figure(
                f"{label}: /cancel, nothing queued (ms)", f"{r.cancel_ms:.2f}", f"{base.cancel_ms:.2f}", "-", "-", None
            ),
        ]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--history", default="0,100000,1000000", help="finished jobs (default 0,100000,1000000)")
    parser.add_argument("--decisions", type=int, default=4000, help="admissions per measurement (default 4000)")
    args = parser.parse_args(argv)
    rows = figures([int(h) for h in args.history.split(",")], args.decisions)
    print_figures(rows)
    return 0 if all(f.met is not False for f in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
