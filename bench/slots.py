"""Does the image service stay busy while pictures upload slowly?

    python -m bench.slots [--jobs 30] [--concurrency 2] [--generate-ms 200] [--upload-ms 200]

``--jobs`` ``/draw`` commands at once to a real :class:`bot.core.Core` whose backend takes ``--generate-ms`` for
each generation and whose sink takes ``--upload-ms`` for each delivery (sleeps: waiting on the image service and
on the chat platform, not work). The floor is what the image service alone needs: ``jobs / concurrency``
generations one after the other in each slot, then the last upload (or, when uploads take longer, as many
uploads one after the other: deliveries at once are bounded by the same concurrency). The ratio is measured jobs
per second over that: 1.0 when the service never waits for an upload. A job that kept its slot through its
upload would score about ``generate / (generate + upload)`` (0.5 with the defaults); the core hands the slot on
once the pictures are ready, so the figure shows the uploads overlapping the next generations. No goal: shown so
that a change which makes slots wait for uploads again is seen.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.support import Figure, InstantBackend, draw_all, encoded_photos, print_figures

SIZE = 768  # small pictures: the figure is about waiting, not about image work


async def run(jobs: int, concurrency: int, generate: float, upload: float) -> float:
    """Seconds from submitting every job to the last one recorded done."""
    backend = InstantBackend(encoded_photos(SIZE, SIZE), hold=lambda: asyncio.sleep(generate))
    return await draw_all(backend, jobs, concurrency, SIZE, upload)


def figures(args: argparse.Namespace) -> list[Figure]:
    generate, upload = args.generate_ms / 1000, args.upload_ms / 1000
    seconds = asyncio.run(run(args.jobs, args.concurrency, generate, upload))
    rounds = -(-args.jobs // args.concurrency)  # generations one after the other in the busiest slot
    # The image service's time, or the uploads' when they are slower: as many run at once as generations.
    floor = max(rounds * generate + upload, generate + rounds * upload)
    name = f"image service busy, upload {args.upload_ms:.0f} ms per {args.generate_ms:.0f} ms generation (jobs/s)"
    rate, floor_rate = args.jobs / seconds, args.jobs / floor
    return [Figure(name, f"{rate:.2f}", f"{floor_rate:.2f}", f"{rate / floor_rate:.2f}", "-", None)]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.slots", description=(__doc__ or "").split("\n", 1)[0])
    p.add_argument("--jobs", type=int, default=30, help="/draw commands submitted at once (default 30)")
    p.add_argument("--concurrency", type=int, default=2, help="SDBOT_BACKEND_CONCURRENCY (default 2)")
    p.add_argument("--generate-ms", type=float, default=200, help="each generation's time (default 200)")
    p.add_argument("--upload-ms", type=float, default=200, help="each delivery's time (default 200)")
    return p


def main(argv: list[str] | None = None) -> None:
    print_figures(figures(parser().parse_args(argv)))


if __name__ == "__main__":
    main()
