"""The slash commands, built at start from the image backend's capabilities.

No ``from __future__ import annotations`` here: discord.py reads the callbacks' annotations, whose ranges are
only known at run time. Why the rest is built this way: docs/MODULES.md, adapters/discord/commands.py.
"""

import functools
import inspect
from collections.abc import Awaitable, Callable

import discord
from discord import app_commands

from adapters.discord.admin import CHANNEL_ACTIONS, AdminHandlers
from adapters.discord.handlers import Handlers
from adapters.discord.translator import localized, text
from bot.chats.policy import POLICIES
from bot.draw import params
from bot.draw.capabilities import Capabilities
from bot.draw.defaults import SETTABLE
from bot.draw.options import BY_NAME, OPTIONS, Option, OptionValue
from bot.messages.presentation import describe

CHOICES_MAX = 25
SNOWFLAKE_MAX = 2**53 - 1  # the largest integer Discord's integer options carry
IMAGES_MAX = 1_000_000
BLOCK_ACTIONS = ("add", "strict", "regex", "remove", "list", "refusals")

# Discord lists the options of /draw in this order of kinds: enumerations, then numbers, then free text.
_LISTED = {"choice": 0, "size": 0, "int": 1, "float": 1, "text": 2}

Completer = Callable[[discord.Interaction, str], Awaitable[list[app_commands.Choice[str]]]]


def build(tree: app_commands.CommandTree, handlers: Handlers, admin: AdminHandlers, caps: Capabilities) -> None:
    tree.add_command(draw_command(handlers, caps))
    tree.add_command(settings_command(admin, caps))
    if caps.image_to_image:
        tree.add_command(draw_from_menu(handlers))
    for command in user_commands(handlers):
        tree.add_command(command)
    tree.add_command(admin_group(admin))


def _choice(option: Option, value: str) -> app_commands.Choice[str]:
    return app_commands.Choice(name=localized(lambda lang: option.label(lang, value)), value=value)


def _loose(value: str) -> str:
    return "".join(ch for ch in params.fold(value) if ch.isalnum())


def completer(option: Option, values: tuple[str, ...]) -> Completer:
    """Autocomplete for an enumeration too long for choices: the values containing what was typed, letters
    and digits only (so ``dpm2m`` finds ``DPM++ 2M``)."""
    folded = [(_loose(value), value) for value in values]

    async def complete(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        needle = _loose(current)
        matches = [value for key, value in folded if needle in key]
        return [_choice(option, value) for value in matches[:CHOICES_MAX]]

    return complete


def _annotation(option: Option, caps: Capabilities) -> object:
    """The slash option's type, with the range this backend accepts (Discord's clients enforce it)."""
    if option.kind == "int":
        low, high = option.range(caps)
        return app_commands.Range[int, int(low), int(high)] | None
    if option.kind == "float":
        low, high = option.range(caps)
        return app_commands.Range[float, low, high] | None
    if option.kind == "text":
        assert option.length is not None
        return app_commands.Range[str, 1, option.length(caps)] | None
    return str | None


def draw_command(handlers: Handlers, caps: Capabilities) -> app_commands.Command:  # type: ignore[type-arg]
    async def draw(
        interaction: discord.Interaction,
        prompt: str,
        image: discord.Attachment | None = None,
        **typed: OptionValue | None,
    ) -> None:
        await handlers.draw(interaction, prompt, typed, image)

    # The parameters are the options this backend takes: discord.py reads them from the callback's signature.
    listed = sorted((o for o in OPTIONS if o.supported(caps)), key=lambda o: _LISTED[o.kind])
    keyword = inspect.Parameter.KEYWORD_ONLY
    # A service that draws from pictures takes one as the "image" attachment option.
    image = [inspect.Parameter("image", keyword, default=None, annotation=discord.Attachment | None)]
    draw.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter("interaction", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=discord.Interaction),
            inspect.Parameter("prompt", keyword, annotation=str),
            *(image if caps.image_to_image else []),
            *(inspect.Parameter(o.name, keyword, default=None, annotation=_annotation(o, caps)) for o in listed),
        ]
    )
    descriptions = {o.name: localized(functools.partial(describe, o, caps=caps)) for o in listed}
    names = {o.name: app_commands.locale_str(o.name, zh=o.zh) for o in listed}
    if caps.image_to_image:
        descriptions["image"] = text("option.image")
        names["image"] = text("discord.name.image")
    callback = app_commands.describe(prompt=text("option.prompt"), **descriptions)(draw)
    callback = app_commands.rename(prompt=text("discord.name.prompt"), **names)(callback)
    choices: dict[str, list[app_commands.Choice[str]]] = {}
    completions: dict[str, Completer] = {}
    for option in listed:
        if option.offered is None:
            continue
        values = option.choices(caps)
        if len(values) <= CHOICES_MAX:
            choices[option.name] = [_choice(option, value) for value in values]
        else:
            completions[option.name] = completer(option, values)
    # discord.py types these decorators for parameters named in code; here the names come from the table.
    callback = app_commands.choices(**choices)(callback)
    if completions:
        callback = app_commands.autocomplete(**completions)(callback)  # type: ignore[arg-type]
    return app_commands.Command(name="draw", description=text("menu.draw"), callback=callback)


def settings_command(admin: AdminHandlers, caps: Capabilities) -> app_commands.Command:  # type: ignore[type-arg]
    """``/settings``: the server's (or DM's) /draw defaults, its options those of /draw that a chat may default,
    with /draw's choices and ranges; ``reset`` unsets one or all. Without options: shows them."""

    async def settings(interaction: discord.Interaction, reset: str | None = None, **typed: OptionValue | None) -> None:
        await admin.chat_settings(interaction, typed, reset)

    listed = [BY_NAME[name] for name in SETTABLE if BY_NAME[name].supported(caps)]
    keyword = inspect.Parameter.KEYWORD_ONLY
    settings.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter("interaction", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=discord.Interaction),
            *(inspect.Parameter(o.name, keyword, default=None, annotation=_annotation(o, caps)) for o in listed),
            inspect.Parameter("moderation", keyword, default=None, annotation=str | None),
            inspect.Parameter("reset", keyword, default=None, annotation=str | None),
        ]
    )
    descriptions = {o.name: localized(functools.partial(describe, o, caps=caps)) for o in listed}
    descriptions["moderation"] = text("discord.option.moderation")
    callback = app_commands.describe(reset=text("discord.option.reset"), **descriptions)(settings)
    names = {o.name: app_commands.locale_str(o.name, zh=o.zh) for o in listed}
    names["moderation"] = text("setting.moderation")
    callback = app_commands.rename(reset=text("discord.name.reset"), **names)(callback)
    resets = [app_commands.Choice(name=app_commands.locale_str(o.name, zh=o.zh), value=o.name) for o in listed]
    choices = {o.name: [_choice(o, value) for value in o.choices(caps)] for o in listed if o.offered is not None}
    choices = {name: values for name, values in choices.items() if len(values) <= CHOICES_MAX}
    resets.append(app_commands.Choice(name=text("setting.moderation"), value="moderation"))
    resets.append(app_commands.Choice(name=text("discord.reset.all"), value="all"))
    choices["moderation"] = [
        app_commands.Choice(name=text(f"setting.moderation.{value}"), value=value) for value in POLICIES["moderation"]
    ]
    callback = app_commands.choices(reset=resets, **choices)(callback)
    return app_commands.Command(name="settings", description=text("menu.settings"), callback=callback)


def draw_from_menu(handlers: Handlers) -> app_commands.ContextMenu:
    """ "Draw from this image" on a message's menu (Apps): a short form asks for the text."""

    async def draw_from(interaction: discord.Interaction, message: discord.Message) -> None:
        await handlers.draw_from_message(interaction, message)

    return app_commands.ContextMenu(name=text("discord.menu.draw_from"), callback=draw_from)


def user_commands(handlers: Handlers) -> list[app_commands.Command]:  # type: ignore[type-arg]
    async def quota(interaction: discord.Interaction) -> None:
        await handlers.command(interaction, "quota")

    @app_commands.describe(language=text("option.language"))
    @app_commands.rename(language=text("discord.name.language"))
    @app_commands.choices(
        language=[
            app_commands.Choice(name=text("lang.name.zh"), value="zh"),
            app_commands.Choice(name=text("lang.name.en"), value="en"),
            app_commands.Choice(name=text("discord.lang.auto"), value="auto"),
        ]
    )
    async def lang(interaction: discord.Interaction, language: str | None = None) -> None:
        await handlers.command(interaction, "lang", language or "")

    @app_commands.describe(job=text("option.job"))
    @app_commands.rename(job=text("discord.name.job"))
    async def cancel(
        interaction: discord.Interaction, job: app_commands.Range[int, 1, SNOWFLAKE_MAX] | None = None
    ) -> None:
        await handlers.cancel(interaction, job)

    async def help_(interaction: discord.Interaction) -> None:
        await handlers.help(interaction)

    return [
        app_commands.Command(name="quota", description=text("menu.quota"), callback=quota),
        app_commands.Command(name="lang", description=text("menu.lang"), callback=lang),
        app_commands.Command(name="cancel", description=text("menu.cancel"), callback=cancel),
        app_commands.Command(name="help", description=text("menu.help"), callback=help_),
    ]


def admin_group(admin: AdminHandlers) -> app_commands.Group:
    """``/sdadmin``: visible to everyone (``SDBOT_ADMINS`` need not manage the server); the handlers check."""
    group = app_commands.Group(name="sdadmin", description=text("menu.admin"), guild_only=True)

    @app_commands.describe(images=text("discord.option.images"))
    @app_commands.rename(images=text("discord.name.images"))
    async def servercap(
        interaction: discord.Interaction, images: app_commands.Range[int, 0, IMAGES_MAX] | None = None
    ) -> None:
        await admin.servercap(interaction, images)

    @app_commands.describe(action=text("discord.option.action"), channel=text("discord.option.channel"))
    @app_commands.rename(action=text("discord.name.action"), channel=text("discord.name.channel"))
    @app_commands.choices(
        action=[app_commands.Choice(name=text(f"discord.action.{a}"), value=a) for a in CHANNEL_ACTIONS]
    )
    async def channels(
        interaction: discord.Interaction, action: str, channel: discord.TextChannel | None = None
    ) -> None:
        await admin.channels(interaction, action, channel.id if channel is not None else None)

    async def stats(interaction: discord.Interaction) -> None:
        await admin.stats(interaction)

    @app_commands.describe(action=text("discord.option.block_action"), value=text("discord.option.block_value"))
    @app_commands.rename(action=text("discord.name.action"), value=text("discord.name.block_value"))
    @app_commands.choices(action=[app_commands.Choice(name=text(f"discord.block.{a}"), value=a) for a in BLOCK_ACTIONS])
    async def block(interaction: discord.Interaction, action: str, value: str | None = None) -> None:
        await admin.block(interaction, action, value)

    @app_commands.describe(member=text("discord.option.member"), images=text("discord.option.images"))
    @app_commands.rename(member=text("discord.name.member"), images=text("discord.name.images"))
    async def quota(
        interaction: discord.Interaction,
        member: discord.User,
        images: app_commands.Range[int, 0, IMAGES_MAX] | None = None,
    ) -> None:
        await admin.member_command(interaction, "quota", member.id, "default" if images is None else str(images))

    def member_only(command: str) -> Callable[[discord.Interaction, discord.User], Awaitable[None]]:
        @app_commands.describe(member=text("discord.option.member"))
        @app_commands.rename(member=text("discord.name.member"))
        async def callback(interaction: discord.Interaction, member: discord.User) -> None:
            await admin.member_command(interaction, command, member.id)

        return callback

    commands = (("servercap", servercap), ("channels", channels), ("stats", stats), ("quota", quota), ("block", block))
    for name, callback in commands:
        group.add_command(app_commands.Command(name=name, description=text(f"discord.admin.{name}"), callback=callback))
    for name in ("ban", "unban", "reset"):
        group.add_command(
            app_commands.Command(
                name=name,
                description=text(f"discord.admin.{name}"),
                callback=member_only(name),  # type: ignore[arg-type]  # an Awaitable-returning callable
            )
        )
    return group
