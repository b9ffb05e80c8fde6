"""The sdbot CLI, run as a real subprocess the way an operator runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def sdbot(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("SDBOT_", "QIANFAN_", "TELEGRAM_"))}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], capture_output=True, text=True, env=environment, cwd=cwd or ROOT,
        timeout=60, check=False,
    )  # fmt: skip


def test_dry_run_json_has_the_seed_document_fields(tmp_path: Path) -> None:
    out = sdbot("draw", "--dry-run", "--json", "cat", "--style", "Anime", "--size", "768x1024", "--n", "2",
                cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {
        "prompt": "cat", "negative_prompt": None, "size": "768x1024", "n": 2, "steps": 20,
        "sampler_index": "Euler a", "seed": None, "cfg_scale": 5.0, "style": "Anime",
    }  # fmt: skip


def test_shell_quoted_values_survive(tmp_path: Path) -> None:
    out = sdbot("draw", "--dry-run", "--json", "cat", "--neg", "a --n 2", "--style", "analog film", cwd=tmp_path)
    data = json.loads(out.stdout)
    assert (data["negative_prompt"], data["style"], data["n"]) == ("a --n 2", "Analog Film", 1)


@pytest.mark.parametrize(("lang", "fragment"), [("en", "Did you mean"), ("zh", "您是不是想输入")])
def test_invalid_input_prints_the_error_and_exits_2(lang: str, fragment: str, tmp_path: Path) -> None:
    out = sdbot("draw", "--dry-run", "--json", "--lang", lang, "cat", "--style", "anmie", cwd=tmp_path)
    assert out.returncode == 2
    error = json.loads(out.stdout)["error"]
    assert (error["code"], error["option"]) == ("unknown_style", "style")
    assert fragment in error["message"]


def test_language_defaults_to_sdbot_lang(tmp_path: Path) -> None:
    out = sdbot("draw", "--dry-run", "--json", "--n", "9", env={"SDBOT_LANG": "zh"}, cwd=tmp_path)
    assert out.returncode == 2 and json.loads(out.stdout)["error"]["code"] == "empty_prompt"
    assert "提示词" in json.loads(out.stdout)["error"]["message"]


def test_generate_writes_real_images_with_the_placeholder(tmp_path: Path) -> None:
    out = sdbot("draw", "--out", str(tmp_path / "imgs"), "--json", "cat", "--size", "576x1024", "--n", "2",
                "--seed", "7", cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "placeholder" in out.stderr.lower()  # operators are warned
    data = json.loads(out.stdout)
    assert data["request"]["seed"] == 7 and len(data["images"]) == 2
    for path in data["images"]:
        with Image.open(path) as img:
            assert img.size == (576, 1024) and img.format == "PNG"
    again = sdbot("draw", "--out", str(tmp_path / "again"), "--json", "cat", "--size", "576x1024", "--seed", "7",
                  "--n", "2", cwd=tmp_path)  # fmt: skip
    first = Path(data["images"][0]).read_bytes()
    assert Path(json.loads(again.stdout)["images"][0]).read_bytes() == first  # deterministic for a seed


def test_without_seed_the_bot_draws_and_reports_one(tmp_path: Path) -> None:
    out = sdbot("draw", "--out", str(tmp_path), "cat", cwd=tmp_path)
    assert out.returncode == 0 and "Seed: " in out.stdout and "random" not in out.stdout


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_invalid_configuration_names_the_variable_and_exits_3(lang: str, tmp_path: Path) -> None:
    out = sdbot("draw", "--dry-run", "cat", env={"SDBOT_DAILY_IMAGES": "lots", "SDBOT_LANG": lang}, cwd=tmp_path)
    assert out.returncode == 3 and "SDBOT_DAILY_IMAGES" in out.stderr
    assert "Traceback" not in out.stderr


def test_env_file_in_working_directory_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("SDBOT_LANG=zh\n")
    out = sdbot("draw", "--dry-run", "cat", cwd=tmp_path)
    assert "提示词：cat" in out.stdout


def test_draw_text_may_start_with_options(tmp_path: Path) -> None:
    out = sdbot("draw", "--dry-run", "--json", "--n", "2", "a", "cat", cwd=tmp_path)
    assert json.loads(out.stdout)["prompt"] == "a cat" and json.loads(out.stdout)["n"] == 2


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "sdbot"
    assert script.exists()
    out = subprocess.run([str(script), "--version"], capture_output=True, text=True, check=False, timeout=30)
    assert out.returncode == 0 and out.stdout.startswith("sdbot ")


def test_draw_from_a_picture_file(tmp_path: Path) -> None:
    """``sdbot draw --image``: the file checked and fitted as a picture sent in chat, the size from its shape."""
    picture = tmp_path / "street.png"
    Image.new("RGB", (1280, 720), "navy").save(picture)
    out = sdbot("draw", "--out", str(tmp_path / "imgs"), "--json", "--image", str(picture), "the same at night",
                "--strength", "0.3", "--seed", "4", cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["request"]["size"] == "1024x576" and data["request"]["strength"] == 0.3
    assert data["request"]["source"] == {"ref": "", "width": 1024, "height": 576, "original": "1280x720", "kept": False}
    with Image.open(data["images"][0]) as img:
        assert img.size == (1024, 576)


@pytest.mark.parametrize(("lang", "fragment"), [("en", "not a picture"), ("zh", "不是机器人能读取的图片")])
def test_a_file_that_is_not_a_picture_exits_2(lang: str, fragment: str, tmp_path: Path) -> None:
    notes = tmp_path / "notes.png"
    notes.write_text("shopping list")
    out = sdbot("draw", "--json", "--lang", lang, "--image", str(notes), "a cat", cwd=tmp_path)
    missing = sdbot("draw", "--json", "--image", str(tmp_path / "nowhere.jpg"), "a cat", cwd=tmp_path)
    assert out.returncode == 2 and json.loads(out.stdout)["error"]["code"] == "picture_not_image"
    assert fragment in json.loads(out.stdout)["error"]["message"]
    assert missing.returncode == 2 and json.loads(missing.stdout)["error"]["code"] == "picture_unreadable"
    assert "nowhere.jpg" in json.loads(missing.stdout)["error"]["message"]
