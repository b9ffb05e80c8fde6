"""``SDBOT_LOG_FORMAT=json``: every log line of ``sdbot run`` is one JSON object, with secrets scrubbed as in text."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

from tests.telegram_support import fake_telegram
from tests.test_telegram_run import start_sdbot, telegram_env


async def test_sdbot_run_logs_one_json_object_a_line_without_the_token(tmp_path: Path) -> None:
    async with fake_telegram() as tg:
        env = {**telegram_env(tg, tmp_path), "SDBOT_LOG_FORMAT": "json"}
        bot = await start_sdbot(env, tmp_path)
        try:
            await tg.wait_for("deleteWebhook", timeout=30)
            await tg.wait_for("getUpdates", timeout=30)
        finally:
            bot.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(bot.communicate(), 30)
    assert bot.returncode == 0, err.decode()
    lines = [json.loads(line) for line in err.decode().splitlines() if line.strip()]
    assert lines and all({"asctime", "levelname", "name", "message"} <= set(line) for line in lines)
    assert any(line["message"].startswith("sdbot running: telegram") for line in lines)
    assert tg.token not in err.decode()
