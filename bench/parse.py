"""Commands parsed and validated per second.

    python -m bench.parse [--seconds 3]

Runs a mix of typical /draw commands (plain, multi-word values, phone dashes, Chinese, quoted, invalid) through
the same ``parse_request`` the bots use and prints one table.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

from bot.draw.validation import parse_request
from bot.errors import DrawError

COMMANDS = [
    "/draw cat",
    "/draw cat --style Anime --size 768x1024 --n 2",
    "/draw@SomeBot a lighthouse at dusk --style cinematic --size 1024x576 --steps 30 --cfg 7.5 --seed 42",
    "/draw portrait —style analog film —sampler dpm++ sde karras —no blurry, low quality",
    "/draw 雨中的古镇 --style 动漫 --size 768×1024 --n 2",
    '/draw "a sign that says --n 2" --sampler "DPM++ 2M Karras" --negative "text, watermark"',
    "/draw cat --style anmie",  # invalid: unknown style with a suggestion
    "/draw cat --n 9",  # invalid: out of range
]


def run(seconds: float) -> dict[str, float]:
    ok = errors = 0
    samples: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        for text in COMMANDS:
            try:
                parse_request(text)
                ok += 1
            except DrawError:
                errors += 1
        samples.append((time.perf_counter() - start) / len(COMMANDS))
    total = ok + errors
    return {
        "commands": total,
        "per_second": total / sum(s * len(COMMANDS) for s in samples),
        "mean_us": statistics.fmean(samples) * 1e6,
        "errors_share": errors / total,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0)
    result = run(parser.parse_args().seconds)
    print(f"machine: {platform.machine()} {platform.python_implementation()} {platform.python_version()}")
    print(f"{'benchmark':<28}{'commands':>10}{'per second':>14}{'mean µs':>10}")
    name = "parse+validate /draw"
    print(f"{name:<28}{result['commands']:>10.0f}{result['per_second']:>14,.0f}{result['mean_us']:>10.1f}")


if __name__ == "__main__":
    main()
