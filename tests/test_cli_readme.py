"""Every example of README.md's command-line section, run with the installed ``sdbot`` executable.

The examples are read out of README.md, so a new or changed example without a check here fails the suite.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SDBOT = Path(sys.executable).parent / "sdbot"


def examples() -> list[str]:
    """The commands of the ```bash block after "Exit codes" in README.md, without their comments."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("Exit codes:") :]
    block = section[section.index("```bash") + len("```bash") : section.index("```", section.index("```bash") + 7)]
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip().startswith("sdbot ")]


Result = subprocess.CompletedProcess[str]


def dry_json(**fields: object) -> Callable[[Result, Path], None]:
    def check(out: Result, _cwd: Path) -> None:
        assert out.returncode == 0, out.stderr
        request = json.loads(out.stdout)
        assert {name: request[name] for name in fields} == fields

    return check


def zh_summary(out: Result, _cwd: Path) -> None:
    assert out.returncode == 0, out.stderr
    assert "提示词：雨中的古镇" in out.stdout and "风格：Anime（动漫）" in out.stdout


def writes_pictures(out: Result, cwd: Path) -> None:
    assert out.returncode == 0, out.stderr
    (picture,) = (cwd / "pictures").iterdir()
    assert re.fullmatch(r"sdbot-\d{8}-\d{6}-7-1\.png", picture.name)
    with Image.open(picture) as image:
        assert image.size == (1024, 576)
    assert "Seed: 7" in out.stdout


def own_option_last(out: Result, cwd: Path) -> None:
    assert out.returncode == 2 and out.stdout == ""
    assert "Unknown option --dry-run" in out.stderr and "go before the text" in out.stderr
    assert not (cwd / "out").exists()


CHECKS: dict[str, Callable[[Result, Path], None]] = {
    'sdbot draw --dry-run --json "cat --style anime --n 2"': dry_json(prompt="cat", style="Anime", n=2),
    'sdbot draw --dry-run --json -- "cat --n 2"': dry_json(prompt="cat", n=2, style="Base"),
    'sdbot draw --dry-run --json cat --neg "blurry, low quality" --style analog film': dry_json(
        prompt="cat", negative_prompt="blurry, low quality", style="Analog Film"
    ),
    "sdbot draw --lang zh --dry-run 雨中的古镇 --style 动漫": zh_summary,
    "sdbot draw --out pictures a lighthouse at dusk --size 1024x576 --seed 7": writes_pictures,
    "sdbot draw cat --n 2 --dry-run": own_option_last,
}


def test_every_readme_example_has_a_check() -> None:
    assert examples() and set(examples()) == set(CHECKS)


@pytest.mark.parametrize("command", list(CHECKS))
def test_readme_example(command: str, tmp_path: Path) -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("SDBOT_", "QIANFAN_", "TELEGRAM_"))}
    environment["SDBOT_DB"] = str(tmp_path / "sdbot.db")
    argv = shlex.split(command)
    out = subprocess.run(
        [str(SDBOT), *argv[1:]], capture_output=True, text=True, env=environment, cwd=tmp_path, timeout=60, check=False
    )
    assert "Traceback" not in out.stderr
    CHECKS[command](out, tmp_path)
