"""Does a pool of image services keep every member busy, at a routing cost that stays flat as members are added?

    python -m bench.pool [--jobs 64] [--members 1 4 16] [--generate-ms 100]

For each member count M, ``--jobs`` ``/draw`` commands at once to a real :class:`bot.core.Core` whose backend is a
:class:`bot.backends.pool.PoolBackend` of M members with one slot each, every generation taking ``--generate-ms``
(a sleep: waiting on the service). The floor is the same core with ONE service of M slots (no pool): jobs per
second the pool reaches over that is 1.0 when routing (each member's capabilities checked against the request,
the least busy chosen, slots waited for) costs nothing users would feel. Then the routing alone: microseconds of
CPU per job to choose a member and give its slot back, as M grows (flat is the goal: the check is per member, but
members are few and it is a dictionary walk). No goals; shown so that a change that makes routing grow or leaves
members idle is seen.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.support import Figure, InstantBackend, draw_all, encoded_photos, print_figures
from bot.backends.pool import Member, PoolBackend
from bot.draw.validation import parse_request
from bot.jobs.breaker import Breaker

SIZE = 768


def pool_of(members: int, hold: float) -> PoolBackend:
    photos = encoded_photos(SIZE, SIZE)
    return PoolBackend(
        [
            Member(f"m{i}", InstantBackend(photos, hold=lambda: asyncio.sleep(hold)), 1, Breaker(5, 30))
            for i in range(members)
        ]
    )


async def routing_us(members: int, rounds: int = 2000) -> float:
    """CPU microseconds per job to choose a member and release it (no generation)."""
    pool = pool_of(members, 0)
    request = parse_request("a lighthouse --size 768x768", await pool.capabilities()).with_seed(1)
    begin = time.process_time()
    for _ in range(rounds):
        member, trial = await pool._take(request, [])
        await pool._release(member, None, trial)
    return (time.process_time() - begin) / rounds * 1e6


def figures(args: argparse.Namespace) -> list[Figure]:
    generate = args.generate_ms / 1000
    out = []
    for members in args.members:
        pooled = asyncio.run(draw_all(pool_of(members, generate), args.jobs, members, SIZE))
        single_backend = InstantBackend(encoded_photos(SIZE, SIZE), hold=lambda: asyncio.sleep(generate))
        single = asyncio.run(draw_all(single_backend, args.jobs, members, SIZE))
        rate, floor = args.jobs / pooled, args.jobs / single
        name = f"pool of {members} x 1 slot vs one service of {members} slots (jobs/s)"
        out.append(Figure(name, f"{rate:.1f}", f"{floor:.1f}", f"{rate / floor:.2f}", "-", None))
    costs = {members: asyncio.run(routing_us(members)) for members in args.members}
    first = costs[args.members[0]]
    for members, cost in costs.items():
        name = f"pool routing, {members} members (CPU us per job)"
        out.append(Figure(name, f"{cost:.0f}", f"{first:.0f}", f"{cost / first:.2f}", "-", None))
    return out


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.pool", description=(__doc__ or "").split("\n", 1)[0])
    p.add_argument("--jobs", type=int, default=64, help="/draw commands submitted at once (default 64)")
    p.add_argument("--members", type=int, nargs="+", default=[1, 4, 16], help="pool sizes (default 1 4 16)")
    p.add_argument("--generate-ms", type=float, default=100, help="each generation's time (default 100)")
    return p


def main(argv: list[str] | None = None) -> None:
    print_figures(figures(parser().parse_args(argv)))


if __name__ == "__main__":
    main()
