"""Today's image services end to end on Discord: the real discord.py client against the fake Discord, the real
OpenAI-compatible client against the fake images API (gpt-image: three sizes, no seed, steps or sampler). The
slash command offers only what the service takes; the message says what was drawn."""

from __future__ import annotations

from pathlib import Path

from bot.backends.openai_images import OpenAIImagesBackend
from tests.backend_support import fast_retry
from tests.discord_support import fake_discord, running_bot
from tests.fakes.openai_images import FakeOpenAIImages

KEY = "sk-discord-services-key"


async def test_an_openai_compatible_service_on_discord(tmp_path: Path) -> None:
    async with FakeOpenAIImages(api_key=KEY) as images:
        backend = OpenAIImagesBackend(KEY, base_url=images.base_url, model="gpt-image-1.5", retry=fast_retry()[0])
        async with fake_discord() as dc, running_bot(dc, tmp_path / "db", backend) as bot:
            options = {o["name"] for o in dc.command("draw")["options"]}
            rec = await dc.invoke_command("draw", {"prompt": "a red fox", "size": "1024x768", "n": 2})
            message = await bot.delivered(rec, 2)
            await bot.core.wait_idle()
            (job,) = await bot.jobs()

    assert options == {"prompt", "size", "n"}  # no style, seed, steps, sampler, cfg or negative
    assert job.status == "done" and job.charged == 2
    assert images.generate_calls[0].body["size"] == "1536x1024"
    last = message.content.splitlines()[-1]
    assert "1536x1024 (3:2, asked 1024x768)" in last and "Seed" not in last and "steps" not in last
