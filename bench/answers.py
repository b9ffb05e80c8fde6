"""Does the event loop keep running while an image service sends a very large answer?

    python -m bench.answers [--sizes 1024x1024,2048x2048] [--n 4] [--rounds 3]

For each size, the real backends (their real httpx client) ask a fake of the service running in a process of
its own (``python -m bench.answers serve KIND``) for ``n`` pictures, two generations at once, ``rounds``
times, while :class:`bench.looplag.LoopLag` measures this loop's lag. The fakes are the test suite's, serving
pictures that compress like real ones (:func:`bench.support.photo_png`: about 7 MB each at 2048x2048):

- **qianfan**: one JSON answer holding every picture as base64 (35 MiB for n=4 at 2048x2048);
- **modelslab**: a JSON answer with URLs, then each picture's bytes downloaded and checked.

The ratio is each size's lag over the smallest size's, in the same run. Goal (issue 24): loop lag p99 at most
20 ms at 2048x2048, n=4, for both.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.looplag import GOAL_P99_MS, LagSummary, LoopLag
from bench.support import Figure, photo_png, print_figures
from bot.backends.base import Backend
from bot.backends.http import RetryPolicy
from bot.draw.request import DrawRequest

KINDS = ("qianfan", "modelslab")
KEY, SECRET = "bench-key", "bench-secret"
START_TIMEOUT = 60.0
ROOT = Path(__file__).resolve().parent.parent


# The fakes' side (the child process) --------------------------------------------------------------------


@functools.cache
def _photo(width: int, height: int, seed: int) -> bytes:
    return photo_png(width, height, seed)


async def serve(kind: str, width: int, height: int) -> None:
    """Run the fake of ``kind`` serving ``width`` x ``height`` photos, print its URL, stop when stdin closes."""
    from tests.fakes.modelslab import FakeModelsLab
    from tests.fakes.qianfan import FakeQianfan

    def image(self: object, fault: object, w: int, h: int, seed: int) -> bytes:
        return _photo(width, height, seed % 4)

    for seed in range(4):
        _photo(width, height, seed)
    fake_class = FakeQianfan if kind == "qianfan" else FakeModelsLab
    patched = type(f"Photo{fake_class.__name__}", (fake_class,), {"image": image})
    options = {"api_key": KEY, "secret_key": SECRET} if kind == "qianfan" else {"api_key": KEY}
    async with patched(**options) as fake:
        print(fake.url, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


# The bot's side -------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def fake(kind: str, width: int, height: int) -> AsyncIterator[str]:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.answers",
        "serve",
        kind,
        f"{width}x{height}",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        assert child.stdout is not None
        url = (await asyncio.wait_for(child.stdout.readline(), START_TIMEOUT)).decode().strip()
        if not url.startswith("http://127.0.0.1"):
            raise RuntimeError(f"the {kind} fake did not start")
        yield url
    finally:
        if child.stdin is not None:
            child.stdin.close()
        try:
            await asyncio.wait_for(child.wait(), 10)
        except TimeoutError:
            child.kill()
            await child.wait()


def backend(kind: str, url: str) -> Backend:
    retry = RetryPolicy(retries=0)
    if kind == "qianfan":
        from bot.backends.qianfan import QianfanBackend

        return QianfanBackend(KEY, SECRET, base_url=url, retry=retry)
    from bot.backends.modelslab import ModelsLabBackend

    return ModelsLabBackend(KEY, base_url=url, retry=retry, max_download=64 * 1024 * 1024)


async def measure(kind: str, width: int, height: int, n: int, rounds: int) -> tuple[LagSummary, float, int]:
    """Loop lag while ``rounds`` times two generations of ``n`` pictures run at once; seconds, bytes."""
    size = f"{width}x{height}" if kind == "qianfan" else "1024x1024"  # ModelsLab's largest; its files are bigger
    request = DrawRequest(prompt="a lighthouse", size=size, n=n, seed=1, sampler_index="Euler a")
    received = 0
    async with fake(kind, width, height) as url, backend(kind, url) as service:
        await service.generate(request, user="warm-up")  # the token, the connections, the fake's caches
        async with LoopLag(callbacks=True) as lag:
            began = time.perf_counter()
            for _ in range(rounds):
                batches = await asyncio.gather(*(service.generate(request, user=f"u{i}") for i in range(2)))
                received += sum(len(image.data) for images in batches for image in images)
            seconds = time.perf_counter() - began
    return lag.summary(), seconds, received


def figures(sizes: list[tuple[int, int]], n: int, rounds: int) -> list[Figure]:
    out = []
    for kind in KINDS:
        results = [asyncio.run(measure(kind, w, h, n, rounds)) for w, h in sizes]
        base = results[0][0]
        for (w, h), (lag, seconds, received) in zip(sizes, results, strict=True):
            last = (w, h) == sizes[-1]
            out.append(
                Figure(
                    f"{kind} n={n} {w}x{h}: loop lag p99 (ms)",
                    f"{lag.p99_ms:.1f} (max {lag.max_ms:.0f}, longest callback {lag.longest_ms or 0:.0f})",
                    f"{base.p99_ms:.1f} at {sizes[0][0]}x{sizes[0][1]}",
                    f"{lag.p99_ms / max(base.p99_ms, 0.1):.2f}",
                    f"<= {GOAL_P99_MS:.0f} ms" if last else "-",
                    lag.met if last else None,
                )
            )
            out.append(
                Figure(
                    f"{kind} n={n} {w}x{h}: pictures (MB/s)",
                    f"{received / seconds / 1e6:.0f}",
                    "-",
                    "-",
                    "-",
                    None,
                )
            )
    return out


def main(argv: list[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["serve"]:
        width, height = (int(side) for side in args_list[2].split("x"))
        asyncio.run(serve(args_list[1], width, height))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1024x1024,2048x2048", help="picture sizes (default 1024x1024,2048x2048)")
    parser.add_argument("--n", type=int, default=4, help="pictures per generation (default 4)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of two generations at once (default 3)")
    args = parser.parse_args(args_list)
    sizes = [tuple(int(side) for side in size.split("x")) for size in args.sizes.split(",")]
    rows = figures(sizes, args.n, args.rounds)  # type: ignore[arg-type]
    print_figures(rows)
    return 0 if all(f.met is not False for f in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
