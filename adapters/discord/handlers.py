"""What each command and button does: core calls in, ephemeral refusals or a deferred public answer out."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import discord

from adapters.discord import pictures
from adapters.discord.admin import role
from adapters.discord.refs import PLATFORM, chat_ref, user_ref
from adapters.discord.replies import guarded, lang_of, reply
from adapters.discord.route import TOKEN_LIFETIME, Route
from adapters.discord.sink import DiscordSink
from adapters.discord.views import edit_form, picture_form
from bot.chats.refs import ChatRef, PictureRef, UserRef
from bot.config import Settings
from bot.core import Core
from bot.draw.grammar import OptionValue, strip_command
from bot.errors import SdbotError
from bot.jobs.job import Job
from bot.messages.i18n import Lang, render_error, t

log = logging.getLogger(__name__)

# Interactions that arrive between connecting and ``start()`` (the core recovering jobs) wait this long.
START_WAIT = 2.0

Submit = Callable[[UserRef, ChatRef, dict[str, object]], Awaitable[Job]]


class Handlers:
    def __init__(
        self, core: Core, settings: Settings, sink: DiscordSink, *, token_lifetime: float = TOKEN_LIFETIME
    ) -> None:
        self.core = core
        self.settings = settings
        self.sink = sink
        self.token_lifetime = token_lifetime
        self.serving = asyncio.Event()

    # Drawing ----------------------------------------------------------------------------------------

    @guarded
    async def draw(
        self,
        interaction: discord.Interaction,
        prompt: str,
        typed: dict[str, OptionValue | None],
        image: discord.Attachment | None = None,
    ) -> None:
        """``/draw``: the prompt may carry inline options (``cat --style Anime``); a typed option that repeats
        one of them is ``duplicate_option``. ``image``: the picture to draw from."""
        picture = None if image is None else pictures.attachment_ref(image)
        await self._admit(
            interaction,
            lambda user, chat, route: self.core.submit(user, chat, prompt, route, typed=typed, picture=picture),
        )

    @guarded
    async def draw_from_message(self, interaction: discord.Interaction, message: discord.Message) -> None:
        """ "Draw from this image" on a message: a short form asks for the text; its answer is
        :meth:`draw_picture`."""
        if not await self._serving(interaction):
            return
        lang = lang_of(self.core, interaction)
        picture = pictures.message_ref(message)
        if picture is None:
            await reply(interaction, t(lang, "error.picture_missing"))
            return
        await interaction.response.send_modal(picture_form(picture.ref, lang))

    @guarded
    async def draw_picture(self, interaction: discord.Interaction, text: str, ref: str) -> None:
        """The answer of "Draw from this image"'s form: ``/draw`` text and the message's picture. The form's id
        carries the picture and can be forged: only a message of the channel the form was sent from is read (never
        a link, never another channel's message)."""
        if not pictures.is_message_in(ref, interaction.channel_id):
            await reply(interaction, render_error(SdbotError("picture_gone"), lang_of(self.core, interaction)))
            return
        picture = PictureRef(ref, durable=True)
        await self._admit(
            interaction, lambda user, chat, route: self.core.submit(user, chat, text, route, picture=picture)
        )

    @guarded
    async def draw_text(self, interaction: discord.Interaction, text: str) -> None:
        """The Edit form: ``/draw`` text as on Telegram."""
        await self._admit(interaction, lambda user, chat, route: self.core.submit(user, chat, text, route))

    @guarded
    async def again(self, interaction: discord.Interaction, job_id: int) -> None:
        await self._admit(
            interaction, lambda user, chat, route: self.core.again(job_id, user, route, strict=chat.strict)
        )

    @guarded
    async def picture_action(self, interaction: discord.Interaction, action: str, job_id: int, index: int) -> None:
        """Upscale (``up``) or Variations (``vary``) of the ``index``-th picture of the message the button is
        under: the message's attachment, fetched again with a fresh link whenever it is needed."""
        message = interaction.message
        attachments = [] if message is None else [a for a in message.attachments if pictures.is_image(a)]
        if message is None or index >= len(attachments):
            await reply(interaction, render_error(SdbotError("picture_gone"), lang_of(self.core, interaction)))
            return
        attachment = attachments[index]
        picture = PictureRef(f"msg:{message.channel.id}:{message.id}:{attachment.id}", True, attachment.size)
        rerun = self.core.upscale if action == "up" else self.core.vary
        await self._admit(
            interaction, lambda user, chat, route: rerun(job_id, user, route, picture, strict=chat.strict)
        )

    @guarded
    async def edit(self, interaction: discord.Interaction, job_id: int) -> None:
        """Open a form holding the job's whole ``/draw`` text (seed included); sending it is a new request.
        Anyone where the picture was posted may (the parameters are in its caption anyway); elsewhere the job
        does not exist: a custom id is only a string a modified client can forge, and a job drawn in a DM or
        another server must not reveal its prompt."""
        if not await self._serving(interaction):
            return
        try:
            text = await self.core.edit_text(job_id, user_ref(interaction), chat_ref(interaction))
        except SdbotError as exc:
            await reply(interaction, render_error(exc, lang_of(self.core, interaction)))
            return
        lang = lang_of(self.core, interaction)
        command = strip_command(text).strip()
        await interaction.response.send_modal(edit_form(command, lang))

    async def _admit(self, interaction: discord.Interaction, submit: Submit) -> None:
        if not await self._serving(interaction):
            return
        user, chat = user_ref(interaction), chat_ref(interaction)
        lang = self.core.language_for(user)
        refusal = await self._refusal(interaction, user, chat, lang)
        if refusal is not None:
            await reply(interaction, refusal)
            return
        route = Route.of(interaction, lifetime=self.token_lifetime)
        self.sink.expect(interaction.id)
        try:
            try:
                job = await submit(user, chat, route.to_json())
            except SdbotError as exc:
                await reply(interaction, render_error(exc, lang))
                return
            try:
                await interaction.response.defer(thinking=True)
            except discord.HTTPException as exc:
                # Too late or refused: the sink finds the token unusable and posts to the channel instead.
                log.warning("job %s: could not acknowledge the interaction (%s %s)", job.id, exc.status, exc.code)
        finally:
            self.sink.acknowledged(interaction.id)

    async def _refusal(self, interaction: discord.Interaction, user: UserRef, chat: ChatRef, lang: Lang) -> str | None:
        """Why this channel cannot take a job, if it cannot: the bot may not post pictures in it (a job that
        outlives the interaction token is posted there), or the server allows /draw elsewhere only."""
        if interaction.guild_id is None:
            return None
        perms = interaction.app_permissions
        thread = interaction.channel if isinstance(interaction.channel, discord.Thread) else None
        can_send = perms.send_messages_in_threads if thread is not None else perms.send_messages
        if not (can_send and perms.attach_files):
            return t(lang, "error.platform_forbidden")
        here = {str(interaction.channel_id)}
        if thread is not None and thread.parent_id is not None:
            here.add(str(thread.parent_id))
        elsewhere = await self.core.channels_elsewhere(user, chat, here)
        if not elsewhere:
            return None
        return t(lang, "discord.channel_not_allowed", channels=[f"<#{c}>" for c in elsewhere])

    async def _serving(self, interaction: discord.Interaction) -> bool:
        if not self.serving.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.serving.wait(), START_WAIT)
        if self.serving.is_set():
            return True
        await reply(interaction, t(lang_of(self.core, interaction), "discord.starting"))
        return False

    # Text commands ----------------------------------------------------------------------------------

    @guarded
    async def command(self, interaction: discord.Interaction, name: str, args: str = "") -> None:
        """``/quota`` and ``/lang``: the core's text commands, answered privately."""
        if not await self._serving(interaction):
            return
        await reply(
            interaction, await self.core.handle_command(user_ref(interaction), chat_ref(interaction), name, args)
        )

    @guarded
    async def help(self, interaction: discord.Interaction) -> None:
        if not await self._serving(interaction):
            return
        lang = lang_of(self.core, interaction)
        try:
            caps = await self.core.capabilities()
        except SdbotError as exc:
            await reply(interaction, render_error(exc, lang))
            return
        text = self.core.help_text(lang, caps, admin=False)
        if role(interaction, self.settings) is not None:
            text += "\n\n" + t(lang, "discord.help.admin")
        await reply(interaction, text)

    @guarded
    async def cancel(self, interaction: discord.Interaction, job_id: int | None) -> None:
        """Cancel queued jobs and say so in their messages too (the owner's own cancellations are not
        reported through the sink)."""
        if not await self._serving(interaction):
            return
        user = user_ref(interaction)
        lang = self.core.language_for(user)
        try:
            cancelled = await self.core.cancel(user, job_id)
        except SdbotError as exc:
            await reply(interaction, render_error(exc, lang))
            return
        images = sum(job.images for job in cancelled)
        await reply(interaction, t(lang, "cmd.cancel.done", jobs=[f"#{job.id}" for job in cancelled], count=images))
        for job in cancelled:
            if job.platform == PLATFORM and job.user == user.key:
                text = t(job.lang, "cmd.cancel.done", jobs=[f"#{job.id}"], count=job.images)
                try:
                    await self.sink.show(job, text)
                except discord.HTTPException as exc:
                    log.info("job %s: could not mark its message cancelled (%s)", job.id, exc.code)
