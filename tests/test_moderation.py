"""The block list: matching that the usual evasions do not get past (and that does not refuse innocent words), the
operators' commands in chat and on the command line, refusals recorded for admins and stats, and the refusal
itself: in the user's language, never echoing the term, nothing charged."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bot.chats.refs import ChatRef, UserRef
from bot.core import Core
from bot.errors import DrawError, SdbotError
from bot.moderation.rules import Rule, breaks, check_pattern, first_match
from tests.pipeline_support import GatedBackend, RecordingSink, make_settings

ROOT = Path(__file__).resolve().parent.parent
RULES = [
    Rule(1, "word", "kill", "cli", 0),
    Rule(2, "word", "Blood Bath", "cli", 0),
    Rule(3, "word", "暴力", "cli", 0),
    Rule(4, "regex", r"gore\w*", "cli", 0),
]
OPERATOR = UserRef("telegram", "1", "en", "Op")
ANN = UserRef("telegram", "2", "zh-hans", "Ann")
DM = ChatRef("telegram", "2", False)
GROUP = ChatRef("telegram", "-100", True, "Group")


@pytest.mark.parametrize(
    "text",
    [
        "KILL the dragon",  # case
        "ｋｉｌｌ the dragon",  # full-width letters
        "k i l l the dragon",  # spaces between the letters
        "ki ll the dragon",
        "k.i.l.l the dragon",  # separators
        "k\u200bi\u200cl\u200dl the dragon",  # zero-width characters
        "k\u0336i\u0336l\u0336l\u0336 the dragon",  # combining strokes
        "ⓚⓘⓛⓛ the dragon",  # enclosed letters
        "a bloodbath",  # a two-word rule written as one
        "a blo od   bath",
        "一场暴力冲突",  # Chinese inside a sentence
        "暴 力 场 景",  # Chinese with spaces between the characters
        "a gоrefest",  # a Cyrillic о in a word a pattern matches
        "GORE",
        "sсene of kіll",  # Cyrillic с and і
    ],
)
def test_evasions_are_caught(text: str) -> None:
    assert first_match(RULES, text) is not None, text


@pytest.mark.parametrize("text", ["skill issue", "a killer whale", "blood orange bath salts", "暴雨", "a nice cat"])
def test_innocent_words_pass(text: str) -> None:
    assert first_match(RULES, text) is None, text


def test_the_negative_prompt_is_screened_too_and_named() -> None:
    assert breaks("a cat", "no KILL please", RULES) == (RULES[0], "negative")
    assert breaks("a cat", None, RULES) is None


def test_bad_rules_are_refused_with_their_reason() -> None:
    for kind, pattern, code in (("word", "   ", "block_invalid"), ("word", "…!!", "block_invalid"),
                                ("regex", "gore(", "block_regex"), ("word", "x" * 201, "block_invalid")):  # fmt: skip
        with pytest.raises(SdbotError) as refused:
            check_pattern(kind, pattern)
        assert refused.value.code == code
    assert check_pattern("regex", r"  gore\w*  ") == r"gore\w*"


async def started(tmp_path: Path) -> tuple[Core, GatedBackend]:
    backend = GatedBackend()
    core = await Core.open(make_settings(tmp_path / "db", admins=frozenset({OPERATOR.key})), backend)
    core.register_sink("telegram", RecordingSink())
    await core.start()
    return core, backend


async def test_a_blocked_prompt_is_refused_recorded_and_never_charged(tmp_path: Path) -> None:
    core, backend = await started(tmp_path)
    try:
        added = await core.handle_command(OPERATOR, ChatRef("telegram", "1", False), "admin", "block add blood bath")
        in_group = await core.handle_command(OPERATOR, GROUP, "admin", "block list")
        with pytest.raises(DrawError) as refused:
            await core.submit(ANN, DM, "/draw a cat --neg B-L-O-O-D bath", {"chat_id": 2})
        with pytest.raises(DrawError):
            await core.submit(OPERATOR, GROUP, "/draw a BloodBath", {"chat_id": -100})  # admins too
        job = await core.submit(ANN, DM, "/draw a blood orange", {"chat_id": 2})
        await core.wait_idle()
        listing = await core.handle_command(OPERATOR, GROUP, "admin", "block list", private=True)
        refusals = await core.handle_command(OPERATOR, ChatRef("telegram", "1", False), "admin", "block refusals")
        stats = await core.stats_report("en")
        metrics = (await core.metrics_text()).decode()
        removed = await core.handle_command(OPERATOR, DM, "admin", "block remove #1")
        missing = await core.handle_command(OPERATOR, DM, "admin", "block remove 1")
        state = await core.quotas.state(ANN.key, None)
    finally:
        await core.close()

    assert added == "Blocked (rule #1, word): blood bath"
    assert in_group == "The block list is only shown and changed in a private chat with the bot."
    assert (refused.value.code, refused.value.option) == ("prompt_blocked", "negative")
    from bot.messages.i18n import render_error

    message = render_error(refused.value, "zh")
    assert message == "无法绘制：描述中含有本机器人不允许的内容。本次不扣额度。" and "blood" not in message
    assert job.status == "queued" and [r.prompt for r in backend.started] == ["a blood orange"]
    assert listing == "Block list (1):\n#1 word: blood bath"
    lines = refusals.splitlines()
    assert lines[0] == "Last refusals (2):" and "telegram:1 in telegram:-100: rule #1 blood bath (prompt)" in lines[1]
    assert "telegram:2 in telegram:2: rule #1 blood bath (negative)" in lines[2]
    assert "Refused by the block list: 2" in stats
    assert 'sdbot_refusals_total{reason="prompt_blocked"} 2.0' in metrics
    assert removed == "Removed rule #1: blood bath" and missing == "There is no block rule #1."
    assert state.used == 1  # only the job that was drawn


def sdbot(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "SDBOT_DB": str(tmp_path / "sdbot.db"), "HOME": str(tmp_path)}
    return subprocess.run([sys.executable, "-m", "bot", *args], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=60, check=False)  # fmt: skip


def test_sdbot_block_and_draw_dry_run(tmp_path: Path) -> None:
    before = sdbot(tmp_path, "draw", "--dry-run", "--json", "a gory nude figure")
    imported = sdbot(tmp_path, "block", "import", str(ROOT / "examples" / "blocklist.txt"))
    pattern = sdbot(tmp_path, "block", "regex", r"gor(e|y)\w*")
    listed = sdbot(tmp_path, "block", "list")
    blocked = sdbot(tmp_path, "draw", "--dry-run", "--json", "--lang", "zh", "a gory figure")
    spaced = sdbot(tmp_path, "draw", "--dry-run", "--json", "a figure, n u d e")
    chinese = sdbot(tmp_path, "draw", "--dry-run", "--json", "一个血 腥的场景")
    fine = sdbot(tmp_path, "draw", "--dry-run", "--json", "a nice cat")
    sdbot(tmp_path, "block", "strict", "lighthouse")
    lenient = sdbot(tmp_path, "draw", "--dry-run", "--json", "a lighthouse")
    strict = sdbot(tmp_path, "draw", "--dry-run", "--json", "--strict", "a light house")
    wrong = sdbot(tmp_path, "block", "regex", "gore(")
    unreadable = sdbot(tmp_path, "block", "import", str(tmp_path / "nowhere.txt"))

    assert before.returncode == 0  # no database yet: no list
    assert imported.returncode == 0 and "Blocked (rule #1, word): nsfw" in imported.stdout
    example = (ROOT / "examples" / "blocklist.txt").read_text().splitlines()
    words = [line for line in example if line.strip() and not line.startswith("#")]
    assert pattern.returncode == 0 and listed.stdout.count("\n#") == len(words) + 1
    for refused in (blocked, spaced, chinese):
        assert refused.returncode == 2 and json.loads(refused.stdout)["error"]["code"] == "prompt_blocked"
    assert "不允许" in json.loads(blocked.stdout)["error"]["message"]
    assert fine.returncode == 0 and lenient.returncode == 0
    assert strict.returncode == 2 and json.loads(strict.stdout)["error"]["code"] == "prompt_blocked"
    assert wrong.returncode == 2 and "regular expression" in wrong.stderr
    assert unreadable.returncode == 2 and "nowhere.txt" in unreadable.stderr


async def test_refusals_are_pruned_with_the_days_they_belong_to(tmp_path: Path) -> None:
    from bot.jobs import retention
    from bot.storage import open_storage

    storage = await open_storage(tmp_path / "db")
    try:
        rule, _ = await storage.moderation.add_rule("word", "gore", "cli")
        for day in ("2027-01-01", "2027-01-02", "2027-01-03"):
            await storage.moderation.record_refusal("telegram:2", "telegram:2", rule, "prompt", day)
        await retention.prune(storage, "2027-01-03")
        left = await storage.moderation.refusals(10)
    finally:
        await storage.close()
    assert len(left) == 1  # the day kept


def test_strict_rules_count_only_where_moderation_is_strict() -> None:
    rules = [Rule(1, "word", "lighthouse", "cli", 0, "strict"), Rule(2, "word", "kill", "cli", 0)]
    assert breaks("a light house", None, rules) is None
    assert breaks("a light house", None, rules, strict=True) == (rules[0], "prompt")
    assert breaks("kill", None, rules) == (rules[1], "prompt")
