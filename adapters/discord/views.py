"""The "Again" and "Edit" buttons under a result, and the form "Edit" opens."""

from __future__ import annotations

import re
from typing import Any, Protocol

import discord

from bot.draw.shape import Drawn
from bot.messages.i18n import Lang, t

EDIT_TEXT_MAX = 4000  # Discord's limit for a text input


class ButtonHandlers(Protocol):
    async def again(self, interaction: discord.Interaction, job_id: int) -> None: ...
    async def edit(self, interaction: discord.Interaction, job_id: int) -> None: ...
    async def picture_action(self, interaction: discord.Interaction, action: str, job_id: int, index: int) -> None: ...


def _handlers(interaction: discord.Interaction) -> ButtonHandlers:
    return interaction.client.handlers  # type: ignore[attr-defined,no-any-return]


class JobButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"sdbot:(?P<action>again|edit):(?P<job>\d+)"):
    """ "Again" or "Edit" under a result: the action and the job are in the custom id."""

    def __init__(self, action: str, job_id: int, label: str) -> None:
        style = discord.ButtonStyle.primary if action == "again" else discord.ButtonStyle.secondary
        super().__init__(discord.ui.Button(label=label, style=style, custom_id=f"sdbot:{action}:{job_id}"))
        self.action, self.job_id = action, job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> JobButton:
        return cls(match["action"], int(match["job"]), "")

    async def callback(self, interaction: discord.Interaction) -> None:
        handlers = _handlers(interaction)
        await (handlers.again if self.action == "again" else handlers.edit)(interaction, self.job_id)


class PictureButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"sdbot:(?P<action>up|vary):(?P<job>\d+):(?P<index>\d+)"
):
    """Upscale or Variations of the ``index``-th picture attached to the message it is under."""

    def __init__(self, action: str, job_id: int, index: int, label: str) -> None:
        custom_id = f"sdbot:{action}:{job_id}:{index}"
        super().__init__(discord.ui.Button(label=label, style=discord.ButtonStyle.secondary, custom_id=custom_id))
        self.action, self.job_id, self.index = action, job_id, index

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> PictureButton:
        return cls(match["action"], int(match["job"]), int(match["index"]), "")

    async def callback(self, interaction: discord.Interaction) -> None:
        await _handlers(interaction).picture_action(interaction, self.action, self.job_id, self.index)


DYNAMIC_ITEMS: tuple[type[discord.ui.DynamicItem[Any]], ...] = (JobButton, PictureButton)
ROW_MAX = 5  # buttons in one of a message's rows


def result_view(job_id: int, lang: Lang, drawn: Drawn | None = None, count: int = 1) -> discord.ui.View:
    """Again and Edit; then Upscale and Variations where the service can, one of each per picture ("U1 U2 …")."""
    view = discord.ui.View(timeout=None)
    view.add_item(JobButton("again", job_id, t(lang, "button.again")))
    view.add_item(JobButton("edit", job_id, t(lang, "button.edit")))
    for row, (action, offered) in enumerate((("up", drawn and drawn.upscale), ("vary", drawn and drawn.vary)), 1):
        if not offered:
            continue
        for index in range(min(count, ROW_MAX)):
            label = t(lang, f"button.{action}" if count == 1 else f"button.{action}.n", n=index + 1)
            button = PictureButton(action, job_id, index, label)
            button.item.row = row
            view.add_item(button)
    return view


EDIT_FORM_ID = "sdbot:edit-form"
EDIT_TEXT_ID = "sdbot:edit-text"


def edit_form(command: str, lang: Lang) -> discord.ui.Modal:
    """A form holding a job's ``/draw`` text, to change and send as a new request.

    Its answer is recognised by its fixed custom id (:func:`submitted_form`, from ``on_interaction``) rather
    than by discord.py's modal store, which forgets forms at a restart or after a timeout; the form is
    stopped before it is sent so that discord.py does not keep it at all.
    """
    form = discord.ui.Modal(title=t(lang, "button.edit"), custom_id=EDIT_FORM_ID, timeout=None)
    form.add_item(
        discord.ui.TextInput(
            label="/draw",
            custom_id=EDIT_TEXT_ID,
            style=discord.TextStyle.paragraph,
            default=command[:EDIT_TEXT_MAX],
            max_length=EDIT_TEXT_MAX,
        )
    )
    form.stop()
    return form


PICTURE_FORM_ID = "sdbot:picture-form:"  # + the picture's reference (msg:channel:message:attachment)


def picture_form(ref: str, lang: Lang) -> discord.ui.Modal:
    """The short form "Draw from this image" opens: the /draw text to draw from the picture ``ref`` with. Its
    answer is recognised by its custom id, which carries the picture (see :func:`edit_form`)."""
    form = discord.ui.Modal(title=t(lang, "discord.picture_form"), custom_id=PICTURE_FORM_ID + ref, timeout=None)
    form.add_item(
        discord.ui.TextInput(
            label="/draw",
            custom_id=EDIT_TEXT_ID,
            style=discord.TextStyle.paragraph,
            placeholder=t(lang, "discord.picture_form.example"),
            max_length=EDIT_TEXT_MAX,
        )
    )
    form.stop()
    return form


def submitted_form(interaction: discord.Interaction) -> tuple[str, str] | None:
    """The custom id and text of a submitted Edit or picture form, or None for any other interaction."""
    data: dict[str, Any] = dict(interaction.data or {})
    custom_id = str(data.get("custom_id") or "")
    if interaction.type is not discord.InteractionType.modal_submit:
        return None
    if custom_id != EDIT_FORM_ID and not custom_id.startswith(PICTURE_FORM_ID):
        return None
    text = _text_input(data)
    return None if text is None else (custom_id, text)


def _text_input(data: dict[str, Any]) -> str | None:
    stack = list(data.get("components") or [])
    while stack:
        component = stack.pop()
        if component.get("custom_id") == EDIT_TEXT_ID:
            return str(component.get("value") or "")
        stack.extend(component.get("components") or [])
        if isinstance(component.get("component"), dict):
            stack.append(component["component"])
    return None
