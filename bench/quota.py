"""Admission decisions per second and decision latency, in one process and in three sharing one file.

    python -m bench.quota              # or: python bench/quota.py [--decisions 20000] [--concurrency 32]

Each decision is :meth:`bot.quotas.admission.Quotas.admit` for a random one of ``--users`` users in one group chat,
against a fresh database: every limit is active (20 images per user per day, a chat cap, generous rate and
pending limits), so about half the decisions admit a job and the rest are refused for ``quota_daily`` and
explained (the refused path costs a second statement). Latency is measured per decision from the call to
its answer, so with ``--concurrency`` tasks in flight it includes waiting for the connection. The floor row
inserts the same job row with a plain ``INSERT ... RETURNING *`` (no limit checked, no counter kept) through
the same kind of connection: the round trip and the write any decision needs.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.chats.refs import ChatRef, UserRef
from bot.config import Settings
from bot.draw.request import DrawRequest
from bot.quotas.admission import Quotas
from bot.quotas.rules import Admission, QuotaError
from bot.storage.sqlite import SQLiteStorage


def _settings(db: Path) -> Settings:
    base = Settings.from_env({}, env_file=None)
    return dataclasses.replace(
        base, db=db, daily_images=20, rate_per_minute=10_000, max_pending=10_000, chat_daily_images=1_000_000
    )


async def run_decisions(db: Path, decisions: int, concurrency: int, users: int, seed: int) -> dict[str, object]:
    """Make ``decisions`` admissions with ``concurrency`` tasks; return counts, latencies and the wall span."""
    settings = _settings(db)
    store = await SQLiteStorage.open(db)
    quotas = Quotas(store, settings)
    rng = random.Random(seed)
    chat = ChatRef("telegram", "-1001", True)
    request = DrawRequest(prompt="bench", n=1)
    plan = [UserRef("telegram", str(rng.randrange(users))) for _ in range(decisions)]
    latencies: list[float] = []
    admitted = rejected = 0
    cursor = 0

    async def client() -> None:
        nonlocal admitted, rejected, cursor
        while cursor < len(plan):
            user = plan[cursor]
            cursor += 1
            admission = Admission(user, chat, request, {"chat_id": 1}, "placeholder", "en", 1, exempt=False)
            began = time.perf_counter()
            try:
                await quotas.admit(admission)
                admitted += 1
            except QuotaError:
                rejected += 1
            latencies.append(time.perf_counter() - began)

    started = time.time()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    ended = time.time()
    await store.close()
    return {"admitted": admitted, "rejected": rejected, "latencies": latencies, "start": started, "end": ended}


async def run_floor(db: Path, statements: int, concurrency: int) -> dict[str, object]:
    """The floor: the same job row inserted ``statements`` times with a plain ``INSERT ... RETURNING *`` (no
    limit checked, no counter kept) through the same kind of connection, ``concurrency`` in flight: the round
    trip and the write every decision needs at the least."""
    store = await SQLiteStorage.open(db)
    request = DrawRequest("bench").to_json()
    row = {
        "user": "telegram:1", "platform": "telegram", "chat": "telegram:-1001", "request": request,
        "route": '{"chat_id":1}', "day": "2025-01-01", "now": time.time(),
    }  # fmt: skip
    sql = (
        "INSERT INTO jobs (user_key, platform, chat_key, group_chat, backend, request, route, lang, status, images, "
        "charged, quota_day, seed, created_at) VALUES (:user, :platform, :chat, 1, 'placeholder', :request, :route, "
        "'en', 'queued', 1, 0, :day, 1, :now) RETURNING *"
    )
    latencies: list[float] = []
    left = statements

    async def client() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            began = time.perf_counter()
            await store.fetchone(sql, row)
            latencies.append(time.perf_counter() - began)

    started = time.time()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    ended = time.time()
    await store.close()
    return {"admitted": statements, "rejected": 0, "latencies": latencies, "start": started, "end": ended}


def _row(label: str, processes: int, results: list[dict[str, object]]) -> list[str]:
    latencies = sorted(x for r in results for x in r["latencies"])  # type: ignore[attr-defined]
    span = max(r["end"] for r in results) - min(r["start"] for r in results)  # type: ignore[type-var,operator]
    count = len(latencies)
    p99 = latencies[min(count - 1, int(count * 0.99))]
    return [
        label,
        str(processes),
        str(count),
        str(sum(r["admitted"] for r in results)),  # type: ignore[misc]
        str(sum(r["rejected"] for r in results)),  # type: ignore[misc]
        f"{count / span:,.0f}",
        f"{statistics.median(latencies) * 1000:.2f}",
        f"{p99 * 1000:.2f}",
    ]


def _print_table(rows: list[list[str]]) -> None:
    header = ["scenario", "processes", "decisions", "admitted", "refused", "decisions/s", "p50 ms", "p99 ms"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for i, row in enumerate([header, *rows]):
        cells = [
            cell.ljust(w) if j == 0 else cell.rjust(w) for j, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells))
        if i == 0:
            print("  ".join("-" * w for w in widths))


def _processes(db: Path, args: argparse.Namespace, count: int) -> list[dict[str, object]]:
    """Run ``count`` worker processes on one file, released together once all have opened the database."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.quota", "--worker", "--db", str(db), "--decisions",
             str(args.decisions // count), "--concurrency", str(args.concurrency), "--users", str(args.users),
             "--seed", str(i)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
        )
        for i in range(count)
    ]  # fmt: skip
    for worker in workers:
        assert worker.stdout is not None and worker.stdout.readline().strip() == "ready"
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write("go\n")
        worker.stdin.flush()
    results = []
    for worker in workers:
        out, _ = worker.communicate()
        if worker.returncode != 0:
            raise SystemExit(f"worker failed with exit code {worker.returncode}")
        results.append(json.loads(out))
    return results


def _worker(args: argparse.Namespace) -> None:
    async def main() -> dict[str, object]:
        await (await SQLiteStorage.open(args.db)).close()  # migrate before the start line, as a running bot would have
        print("ready", flush=True)
        sys.stdin.readline()
        return await run_decisions(Path(args.db), args.decisions, args.concurrency, args.users, args.seed)

    print(json.dumps(asyncio.run(main())))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.quota", description=__doc__.split("\n")[0])
    parser.add_argument("--decisions", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=32, help="admissions in flight per process")
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(args)
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="sdbot-bench-") as tmp:
        for label, concurrency in (
            ("one process, sequential", 1),
            (f"one process, {args.concurrency} in flight", None),
        ):
            db = Path(tmp) / f"one-{label[:3]}-{concurrency}.db"
            n = args.decisions // 4 if concurrency == 1 else args.decisions
            result = asyncio.run(run_decisions(db, n, concurrency or args.concurrency, args.users, args.seed))
            rows.append(_row(label, 1, [result]))
        floor = asyncio.run(run_floor(Path(tmp) / "floor.db", args.decisions, args.concurrency))
        rows.append(_row(f"floor: plain INSERT, {args.concurrency} in flight", 1, [floor]))
        rows.append(_row(f"3 processes, one file, {args.concurrency} in flight each", 3, _processes(
            Path(tmp) / "shared.db", args, 3)))  # fmt: skip
    print(f"sdbot admission benchmark: SQLite {__import__('sqlite3').sqlite_version}, {os.cpu_count()} CPUs\n")
    _print_table(rows)


if __name__ == "__main__":
    main()
