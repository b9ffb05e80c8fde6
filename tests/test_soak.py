"""The soak's short form (:mod:`bench.soak`; the full one is ``python -m bench soak --full``).

300 Telegram and 100 Discord commands through ``sdbot run`` as a real process, generating with the Qianfan
backend over HTTP against a fake that answers 15 % of the generations with a fault of every mapped class, a
3-second outage of the image API, injected 429s on both platforms, one SIGTERM and two SIGKILLs with restarts.
Whatever the timing, every accepted job is delivered once or failed, refunded and told, every refusal is
answered, the quota counters equal the job ledger and no secret reaches the bot's DEBUG log.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bench import soak


@pytest.mark.slow
async def test_the_short_soak_loses_nothing_and_charges_no_failure(tmp_path: Path) -> None:
    async with asyncio.timeout(300):  # the soak bounds itself well below this
        report = await soak.run(soak.SHORT, tmp_path)
    print("\n".join(report.lines()))  # the figures, for the CI log (pytest -s, or on failure)
    assert report.problems == []

    # It exercised what it claims to.
    assert report.commands["discord"] == 100 and report.commands["telegram"] + report.other_commands == 300
    assert report.accepted["telegram"] >= 50 and report.accepted["discord"] >= 20
    assert report.refused["telegram"] >= 10 and report.refused["discord"] >= 5
    assert sum(report.delivered.values()) >= 50 and sum(report.failed_refunded.values()) >= 5
    assert sum(report.faults.values()) >= 10 and report.telegram_429s and report.discord_429s
    assert [line.split(", ")[-1] for line in report.lives] == ["term (0)", "kill (-9)", "kill (-9)", "term (0)"]
    assert report.secrets_checked >= 6 and report.log_bytes > 1_000_000
