"""The Discord command tree as Discord stores it after sync: options, ranges and choices from the backend's
capabilities, zh-CN / zh-TW localizations from the catalogs, guild or global sync."""

from __future__ import annotations

import dataclasses
import importlib
import re
from pathlib import Path

import pytest

from adapters.discord.adapter import parse_guild_ids
from bot.draw.capabilities import SEED, Capabilities
from bot.draw.options import BY_NAME
from bot.errors import ConfigError
from bot.messages.i18n import render_error, t
from bot.messages.presentation import describe
from tests.discord_support import fake_discord, running_bot
from tests.pipeline_support import GatedBackend

# End to end on both storage engines: SQLite and PostgreSQL (tests/conftest.py, ``engine``).
pytestmark = pytest.mark.usefixtures("engine")

DRAW_OPTIONS = ["prompt", "style", "size", "sampler", "n", "steps", "seed", "cfg", "negative"]


class ManySamplers(GatedBackend):
    """A backend (think of an A1111 server) with more samplers than Discord allows choices, and no seeds."""

    async def capabilities(self) -> Capabilities:
        samplers = (*SEED.samplers, *(f"Custom Sampler {i}" for i in range(20)))
        return dataclasses.replace(SEED, backend=self.name, samplers=samplers, max_n=2, steps=(5, 80), seed=False)


def test_the_package_name_does_not_shadow_discord_py() -> None:
    adapter = importlib.import_module("adapters.discord")
    import discord

    assert adapter.__name__ == "adapters.discord" and hasattr(adapter, "DiscordAdapter")
    assert hasattr(discord, "Client") and "site-packages" in (discord.__file__ or "")
    assert importlib.import_module("adapters.discord.client").discord is discord


async def test_sync_declares_draw_with_localized_options_and_backend_choices(tmp_path: Path) -> None:
    async with fake_discord() as dc, running_bot(dc, tmp_path / "db"):
        draw = dc.command("draw")
        names = {c["name"] for c in dc.commands}

    assert names == {"draw", "quota", "lang", "cancel", "help", "sdadmin", "settings"}
    assert draw["description"] == t("en", "menu.draw")
    assert draw["description_localizations"] == {"zh-CN": t("zh", "menu.draw"), "zh-TW": t("zh", "menu.draw")}
    options = {o["name"]: o for o in draw["options"]}
    assert list(options) == DRAW_OPTIONS and options["prompt"]["required"]
    for name in DRAW_OPTIONS[1:]:  # the options' Chinese names and descriptions, with this backend's ranges
        option = BY_NAME[name]
        assert options[name]["name_localizations"] == {"zh-CN": option.zh, "zh-TW": option.zh}
        assert options[name]["description"] == describe(option, "en", SEED)
        assert options[name]["description_localizations"]["zh-CN"] == describe(option, "zh", SEED)
    assert options["prompt"]["name_localizations"]["zh-CN"] == "描述"
    assert options["prompt"]["description_localizations"]["zh-CN"] == t("zh", "option.prompt")
    assert options["steps"]["name_localizations"]["zh-CN"] == "步数"
    assert "1-4" in options["n"]["description"] and "1-4" in options["n"]["description_localizations"]["zh-CN"]
    styles = options["style"]["choices"]
    assert [c["value"] for c in styles] == list(SEED.styles)
    anime = next(c for c in styles if c["value"] == "Anime")
    assert (
        anime["name"] == "Anime"
        and anime["name_localizations"]["zh-CN"] == BY_NAME["style"].label("zh", "Anime") == "Anime（动漫）"
    )
    assert [c["value"] for c in options["size"]["choices"]] == list(SEED.sizes)
    assert [c["value"] for c in options["sampler"]["choices"]] == list(SEED.samplers)
    assert (options["n"]["type"], options["n"]["min_value"], options["n"]["max_value"]) == (4, 1, 4)
    assert (options["steps"]["min_value"], options["steps"]["max_value"]) == (10, 50)
    assert (options["cfg"]["type"], options["cfg"]["min_value"], options["cfg"]["max_value"]) == (10, 0, 30)
    assert options["seed"]["max_value"] == 4294967295


async def test_admin_group_and_user_commands_are_localized(tmp_path: Path) -> None:
    async with fake_discord() as dc, running_bot(dc, tmp_path / "db"):
        admin, lang = dc.command("sdadmin"), dc.command("lang")

    subs = {o["name"]: o for o in admin["options"]}
    assert set(subs) == {"servercap", "channels", "stats", "quota", "ban", "unban", "reset", "block"}
    assert admin["dm_permission"] is False  # servers only
    assert subs["servercap"]["description_localizations"]["zh-CN"] == t("zh", "discord.admin.servercap")
    channels = {o["name"]: o for o in subs["channels"]["options"]}
    assert channels["channel"]["type"] == 7 and channels["channel"]["channel_types"] == [0, 5]  # text, announcement
    assert [c["value"] for c in channels["action"]["choices"]] == ["allow", "remove", "list", "clear"]
    assert {o["name"]: o["type"] for o in subs["quota"]["options"]} == {"member": 6, "images": 4}
    (language,) = lang["options"]
    assert [c["value"] for c in language["choices"]] == ["zh", "en", "auto"]
    assert language["choices"][2]["name_localizations"]["zh-TW"] == t("zh", "discord.lang.auto")


async def test_long_enumerations_become_autocomplete_and_ranges_follow_the_backend(tmp_path: Path) -> None:
    async with fake_discord() as dc, running_bot(dc, tmp_path / "db", ManySamplers()):
        options = {o["name"]: o for o in dc.command("draw")["options"]}
        typed = await dc.autocomplete("draw", {"prompt": "cat", "sampler": "dpm2m"}, "sampler")
        await dc.wait_for(lambda: typed.autocomplete_choices is not None)
        custom = await dc.autocomplete("draw", {"prompt": "cat", "sampler": "custom"}, "sampler")
        await dc.wait_for(lambda: custom.autocomplete_choices is not None)

    assert options["sampler"]["autocomplete"] is True and not options["sampler"].get("choices")
    assert len(options["style"]["choices"]) == len(SEED.styles)  # still fits: choices
    assert (options["n"]["max_value"], options["steps"]["min_value"], options["steps"]["max_value"]) == (2, 5, 80)
    assert "1-2" in options["n"]["description"] and "5-80" in options["steps"]["description"]
    assert "seed" not in options  # an option the backend does not take is not offered
    assert [c["value"] for c in typed.autocomplete_choices or []] == [
        "DPM++ 2M",
        "DPM++ 2M Karras",
        "DPM++ 2M SDE",
        "DPM++ 2M SDE Karras",
    ]
    assert len(custom.autocomplete_choices or []) == 20  # at most 25 ever


async def test_guild_ids_sync_to_those_servers_only(tmp_path: Path) -> None:
    async with fake_discord() as dc, running_bot(dc, tmp_path / "db", discord_guild_ids=f" {dc.GUILD_ID}, "):
        stored = dc.guild_commands[dc.GUILD_ID]

    assert dc.commands == []
    assert {c["name"] for c in stored} == {"draw", "quota", "lang", "cancel", "help", "sdadmin", "settings"}
    assert all(c["guild_id"] == str(dc.GUILD_ID) for c in stored)


async def test_every_synced_text_comes_from_the_catalogs(tmp_path: Path) -> None:
    """A key missing from a catalog would show as the key itself ("discord.name.job")."""
    async with fake_discord() as dc, running_bot(dc, tmp_path / "db"):
        commands = dc.commands

    texts: list[str] = []
    stack: list[object] = list(commands)
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            texts.append(item)
    assert texts and not [s for s in texts if re.match(r"^(discord|option|menu|lang|button)\.[a-z_.]+$", s)]
    names = [s for c in commands for o in c["options"] for s in (o["name"], *o.get("name_localizations", {}).values())]
    assert all(name == name.lower() and " " not in name and len(name) <= 32 for name in names)


def test_guild_ids_are_parsed_or_refused_naming_the_variable() -> None:
    assert parse_guild_ids("") == ()
    assert parse_guild_ids("12, 34,12,") == (12, 34)
    with pytest.raises(ConfigError) as caught:
        parse_guild_ids("12,my-server")
    assert caught.value.variable == "DISCORD_GUILD_IDS"
    assert "DISCORD_GUILD_IDS" in render_error(caught.value, "zh")


class PoolLike(GatedBackend):
    """A backend of two services that draw at aspect ratios without steps, sampler or cfg: what a pool of
    Stability v2beta members offers."""

    async def capabilities(self) -> Capabilities:
        return dataclasses.replace(
            SEED,
            backend=self.name,
            samplers=(),
            models=("gpu1", "paid"),
            aspect_ratios=("16:9", "1:1", "9:16"),
            unsupported=frozenset({"steps", "sampler", "cfg"}),
        )


async def test_a_pool_offers_model_and_leaves_out_what_it_does_not_take(tmp_path: Path) -> None:
    backend = PoolLike()
    async with fake_discord() as dc, running_bot(dc, tmp_path / "db", backend) as bot:
        options = {o["name"]: o for o in dc.command("draw")["options"]}
        await dc.invoke_command("draw", {"prompt": "a fox", "model": "paid"})
        await backend.wait_started(1)
        jobs = await bot.jobs()

    assert [c["value"] for c in options["model"]["choices"]] == ["gpu1", "paid"]
    assert options["model"]["name_localizations"]["zh-CN"] == "模型"
    assert not {"steps", "sampler", "cfg"} & set(options)
    assert backend.started[0].model == "paid" and jobs[0].request.model == "paid"
