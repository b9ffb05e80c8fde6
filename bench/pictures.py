"""Does checking and fitting a picture sent to draw from cost the same whatever its size, without stalling the loop?

    python -m bench.pictures [--megapixels 1 12 48] [--rounds 3]

For each size, a photo-like JPEG (what phones send) and PNG of that many megapixels is checked
(:func:`bot.draw.picture.read`) and fitted to 1024x1024 (:func:`bot.draw.picture.fit`), as a /draw from a picture
does before anything is charged. The floor is the same work with every pixel decoded at full size (Pillow without
``draft``): the JPEG's cost should stay nearly flat as megapixels grow (it is decoded at a fraction of its size),
where the floor grows with the pixels; a PNG cannot be decoded at a fraction, so both grow. Then eight fits of the
largest JPEG at once through the bot's CPU thread, while the event loop's lag is measured (goal: p99 <= 20 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PIL import Image, ImageOps

from bench.looplag import GOAL_P99_MS, LoopLag
from bench.support import Figure, print_figures
from bot.draw import picture
from bot.draw.capabilities import Capabilities
from bot.draw.request import DrawRequest

LIMIT = 1 << 30
TARGET = (1024, 1024)


def photo(megapixels: float, fmt: str) -> bytes:
    """A noisy gradient (photos do not compress to nothing) of about ``megapixels``, 4:3."""
    width = int((megapixels * 1e6 * 4 / 3) ** 0.5)
    height = int(width * 3 / 4)
    noise = Image.effect_noise((width, height), 40)
    img = Image.merge("RGB", (noise, Image.linear_gradient("L").resize((width, height)), noise))
    out = io.BytesIO()
    img.save(out, fmt, **({"quality": 90} if fmt == "JPEG" else {"compress_level": 1}))
    return out.getvalue()


def checked_and_fitted(data: bytes) -> None:
    picture.read(data, LIMIT)
    picture.fit(data, *TARGET)


def decoded_whole(data: bytes) -> None:
    """The floor: the same check and fit, every pixel decoded at full size first."""
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        ImageOps.fit(ImageOps.exif_transpose(img).convert("RGB"), TARGET, Image.Resampling.LANCZOS).save(
            io.BytesIO(), "PNG", compress_level=3
        )


def seconds(work: object, data: bytes, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        begin = time.perf_counter()
        work(data)  # type: ignore[operator]
        times.append(time.perf_counter() - begin)
    return statistics.median(times)


async def concurrent_fits(data: bytes, count: int = 8) -> LoopLag:
    lag = LoopLag(callbacks=True)
    caps = Capabilities(backend="bench", image_to_image=True)
    request = DrawRequest("bench", size="1024x1024")
    async with lag:
        infos = await asyncio.gather(*(picture.check(data, LIMIT) for _ in range(count)))
        await asyncio.gather(*(picture.attach(request, caps, data, ref="", original=i.size, kept=False) for i in infos))
    return lag


def figures(args: argparse.Namespace) -> list[Figure]:
    out = []
    for fmt in ("JPEG", "PNG"):
        smallest = None
        for megapixels in args.megapixels:
            data = photo(megapixels, fmt)
            bot_s = seconds(checked_and_fitted, data, args.rounds)
            floor_s = seconds(decoded_whole, data, args.rounds)
            smallest = smallest or bot_s
            out.append(
                Figure(
                    f"check+fit {fmt} {megapixels} MP ({len(data) / 2**20:.1f} MB)",
                    f"{bot_s * 1000:.0f} ms ({bot_s / smallest:.1f}x the smallest)",
                    f"{floor_s * 1000:.0f} ms",
                    f"{bot_s / floor_s:.2f}",
                    "-",
                    None,
                )
            )
    largest = photo(max(args.megapixels), "JPEG")
    summary = asyncio.run(concurrent_fits(largest)).summary()
    out.append(
        Figure(
            f"loop lag p99, 8 fits of {max(args.megapixels)} MP at once",
            f"{summary.p99_ms:.1f} ms (longest callback {summary.longest_ms or 0:.0f} ms)",
            "-",
            "-",
            f"<= {GOAL_P99_MS:.0f} ms",
            summary.met,
        )
    )
    return out


def parser() -> argparse.ArgumentParser:
    out = argparse.ArgumentParser(prog="python -m bench.pictures", description=(__doc__ or "").split("\n")[0])
    out.add_argument("--megapixels", type=int, nargs="+", default=[1, 12, 48])
    out.add_argument("--rounds", type=int, default=3)
    return out


def main(argv: list[str] | None = None) -> int:
    results = figures(parser().parse_args(argv))
    print_figures(results)
    return 0 if all(f.met is not False for f in results) else 1


if __name__ == "__main__":
    sys.exit(main())
