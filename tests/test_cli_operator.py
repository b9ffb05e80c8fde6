"""The operator's commands run as the installed ``sdbot`` executable: every mistake is one clear line and an
exit code, nothing is half-applied, and commands that only read never create anything."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.cli_support import sdbot


def test_quota_set_checks_every_argument_before_writing_anything(tmp_path: Path) -> None:
    db = str(tmp_path / "sdbot.db")
    before = sdbot("quota", "show", "telegram:7", cwd=tmp_path, SDBOT_DB=db)
    assert before.returncode == 3  # no database yet: show creates none
    out = sdbot("quota", "set", "telegram:7", "9", "--rate", "1", "--pending", "abc", cwd=tmp_path, SDBOT_DB=db)
    assert out.returncode == 2
    assert "--pending must be a whole number from 1 to 999999999" in out.stderr and "“abc”" in out.stderr
    assert "/admin" not in out.stdout + out.stderr and out.stdout == ""
    sdbot("quota", "set", "telegram:8", "5", cwd=tmp_path, SDBOT_DB=db)  # the database exists from here on
    for args in (["9", "--rate", "1", "--pending", "0"], ["-1"], ["99999999999"], ["9", "--rate", "x"]):
        out = sdbot("quota", "set", "telegram:7", *args, cwd=tmp_path, SDBOT_DB=db)
        assert out.returncode == 2 and "Nothing was changed" in out.stderr, (args, out.stderr)
    shown = sdbot("quota", "show", "telegram:7", cwd=tmp_path, SDBOT_DB=db)
    assert "of 20 used" in shown.stdout and "at most 3 per minute" in shown.stdout  # the defaults, untouched
    zh = sdbot("quota", "set", "--lang", "zh", "telegram:7", "lots", cwd=tmp_path, SDBOT_DB=db)
    assert zh.returncode == 2 and "IMAGES 必须是 0 到 999999999 之间的整数" in zh.stderr
    chat = sdbot("quota", "set", "--chat", "telegram:-100", "5", "--rate", "1", cwd=tmp_path, SDBOT_DB=db)
    assert chat.returncode == 2 and "Usage: sdbot quota set" in chat.stderr
    done = sdbot("quota", "set", "telegram:7", "9", "--rate", "1", "--pending", "3", cwd=tmp_path, SDBOT_DB=db)
    assert done.returncode == 0 and "of 9 used" in done.stdout and "at most 1 per minute" in done.stdout
    assert "of at most 3" in done.stdout


@pytest.mark.parametrize("command", [["stats"], ["quota", "show", "telegram:1"], ["prune", "--dry-run"]])
def test_commands_that_only_read_create_nothing(command: list[str], tmp_path: Path) -> None:
    db = tmp_path / "missing" / "dir" / "x.db"
    out = sdbot(*command, cwd=tmp_path, SDBOT_DB=str(db))
    assert out.returncode == 3 and "There is no database at" in out.stderr and "SDBOT_DB" in out.stderr
    assert not (tmp_path / "missing").exists()
    zh = sdbot(*command, "--lang", "zh", cwd=tmp_path, SDBOT_DB=str(db))
    assert zh.returncode == 3 and "还没有数据库" in zh.stderr


def corrupt_database(path: Path) -> None:
    """A real sdbot database with some of its pages overwritten."""
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode = DELETE")
    con.close()
    assert path.stat().st_size > 4 * 4096
    with path.open("r+b") as fh:
        fh.seek(2 * 4096)
        fh.write(bytes(range(256)) * 48)


@pytest.mark.parametrize("damage", ["not a database", "damaged pages"])
@pytest.mark.parametrize("command", [["stats"], ["quota", "show", "telegram:1"], ["prune", "--dry-run"], ["run"]])
def test_an_unusable_database_is_one_line_and_exit_3(damage: str, command: list[str], tmp_path: Path) -> None:
    db = tmp_path / "sdbot.db"
    if damage == "not a database":
        db.write_text("hello, I am a text file\n" * 100)
    else:
        assert sdbot("quota", "set", "telegram:1", "5", cwd=tmp_path, SDBOT_DB=str(db)).returncode == 0
        corrupt_database(db)
    # A closed port: had sdbot run connected to Telegram before looking at the database, it would say so.
    env = {"SDBOT_DB": str(db), "TELEGRAM_BOT_TOKEN": "1:x", "TELEGRAM_API_URL": "http://127.0.0.1:9"}
    out = sdbot(*command, cwd=tmp_path, **env)
    assert out.returncode == 3, out.stderr  # every command reads every page first, not only what it reports
    assert f"The database {db} (SDBOT_DB) cannot be used" in out.stderr
    assert "Telegram" not in out.stderr


def test_numbers_past_what_the_database_holds_are_a_configuration_error(tmp_path: Path) -> None:
    out = sdbot("quota", "show", "telegram:1", cwd=tmp_path, SDBOT_DAILY_IMAGES="99999999999999999999999")
    assert out.returncode == 3 and "SDBOT_DAILY_IMAGES" in out.stderr and "0 to 999999999" in out.stderr
    for name, value in (("SDBOT_BACKEND_TIMEOUT", "inf"), ("SDBOT_BACKEND_TIMEOUT", "1e400"),
                        ("TELEGRAM_WEBHOOK_PORT", "70000")):  # fmt: skip
        out = sdbot("draw", "--dry-run", "cat", cwd=tmp_path, **{name: value})
        assert out.returncode == 3 and name in out.stderr, (name, out.stderr)


def test_draw_json_is_json_on_every_path(tmp_path: Path) -> None:
    out = sdbot("draw", "--json", "cat", cwd=tmp_path, SDBOT_BACKEND="foo")
    assert out.returncode == 3
    error = json.loads(out.stdout)["error"]
    assert (error["code"], error["variable"]) == ("config_invalid", "SDBOT_BACKEND") and "foo" in error["message"]
    (tmp_path / "afile").write_text("x")
    out = sdbot("draw", "--json", "--out", "afile/pictures", "cat", cwd=tmp_path)
    assert out.returncode == 2
    error = json.loads(out.stdout)["error"]
    assert (error["code"], error["option"]) == ("output_unwritable", "out") and "afile/pictures" in error["message"]


def test_draw_into_a_folder_it_cannot_write_is_an_error_before_generating(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    out = sdbot("draw", "--out", "afile/sub", "cat", cwd=tmp_path)
    assert out.returncode == 2 and "cannot be written to afile/sub (--out)" in out.stderr
    assert "Prompt:" not in out.stdout  # nothing was drawn
    zh = sdbot("draw", "--lang", "zh", "--out", "afile/sub", "cat", cwd=tmp_path)
    assert zh.returncode == 2 and "无法把图片写入" in zh.stderr


def test_run_without_any_chat_token_is_a_configuration_error(tmp_path: Path) -> None:
    out = sdbot("run", cwd=tmp_path, SDBOT_DB=str(tmp_path / "x.db"))
    assert out.returncode == 3 and "TELEGRAM_BOT_TOKEN" in out.stderr and "DISCORD_BOT_TOKEN" in out.stderr
