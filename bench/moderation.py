"""What does screening a /draw against the block list cost as the list grows?

    python -m bench.moderation [--rules 10 100 1000] [--rounds 200]

For each size of list (words of a real vocabulary's shape, one in ten a regex), the time to read the rules from
SQLite (as every request does, so that ``sdbot block`` reaches a running bot at once) and to match a 60-word prompt
and a negative prompt that break no rule (the worst case: every rule is tried). The floor is the prompt folded
alone (:func:`bot.moderation.fold.fold`), which every screening does once whatever the list. No goal; shown so that
a list of thousands of rules is seen to cost what it does.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.support import Figure, print_figures
from bot.moderation.fold import fold
from bot.moderation.rules import breaks
from bot.storage import open_storage

PROMPT = " ".join(f"word{i} scenery lighthouse dusk painterly" for i in range(12))
NEGATIVE = "blurry, low quality, watermark, text, extra fingers"


async def per_request_ms(rules: int, rounds: int, folder: Path) -> tuple[float, float]:
    """Milliseconds per request: reading the list, and matching (after one warm-up that compiles each rule)."""
    storage = await open_storage(folder / f"m{rules}.db")
    try:
        for i in range(rules):
            kind, pattern = ("regex", rf"forbidden{i}\w*") if i % 10 == 0 else ("word", f"blocked term {i}")
            await storage.moderation.add_rule(kind, pattern, "bench")
        listed = await storage.moderation.rules()
        breaks(PROMPT, NEGATIVE, listed)  # compiles every rule once, as the first request does
        begin = time.perf_counter()
        for _ in range(rounds):
            listed = await storage.moderation.rules()
        read = (time.perf_counter() - begin) / rounds
        begin = time.perf_counter()
        for _ in range(rounds):
            assert breaks(PROMPT, NEGATIVE, listed) is None
        match = (time.perf_counter() - begin) / rounds
    finally:
        await storage.close()
    return read * 1000, match * 1000


def parser() -> argparse.ArgumentParser:
    out = argparse.ArgumentParser(prog="python -m bench.moderation", description=(__doc__ or "").split("\n")[0])
    out.add_argument("--rules", type=int, nargs="+", default=[10, 100, 1000])
    out.add_argument("--rounds", type=int, default=200)
    return out


def figures(args: argparse.Namespace) -> list[Figure]:
    begin = time.perf_counter()
    for _ in range(args.rounds):
        fold(PROMPT)
        fold(NEGATIVE)
    floor = (time.perf_counter() - begin) / args.rounds * 1000
    out = []
    with tempfile.TemporaryDirectory(prefix="sdbot-bench-") as tmp:
        for rules in args.rules:
            read, match = asyncio.run(per_request_ms(rules, args.rounds, Path(tmp)))
            out.append(
                Figure(
                    f"block list of {rules}: read + match per /draw",
                    f"{read:.2f} + {match:.2f} ms",
                    f"fold {floor:.2f} ms",
                    f"{(read + match) / floor:.1f}",
                    "-",
                    None,
                )
            )
    return out


def main(argv: list[str] | None = None) -> int:
    print_figures(figures(parser().parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
