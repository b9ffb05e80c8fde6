"""Telegram updates -> core calls: ``/draw``, the text commands, the Again/Edit buttons."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from telegram import CallbackQuery, Chat, ChatMember, MaybeInaccessibleMessage, Message, MessageEntity, Update, User
from telegram.constants import ChatType
from telegram.error import TelegramError
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, ContextTypes, MessageHandler, filters

from adapters.telegram.pictures import file_id, picture_of
from adapters.telegram.sender import Sender
from adapters.telegram.settings import choice_value, settings_keyboard, values_keyboard
from adapters.telegram.sink import PICTURES_KEY, SPOILER_KEY
from adapters.telegram.status import StatusBoard
from adapters.telegram.text import MAX_ALERT, MAX_TEXT, chunks, utf16_len
from bot.chats.refs import ChatRef, PictureRef, UserRef
from bot.core import Core, DeliveryGone
from bot.draw.compose import split_command
from bot.errors import SdbotError
from bot.messages.i18n import Lang, Msg, render_error, t

log = logging.getLogger(__name__)

TEXT_COMMANDS = ("start", "help", "quota", "lang", "cancel", "admin", "settings")
DRAW_CAPTION = re.compile(r"^/draw(@\w+)?(\s|$)", re.IGNORECASE)
_ADMIN_ON_USER = {"ban": 0, "unban": 0, "reset": 0, "quota": 1}  # sub-command -> words it takes besides the user

Context = ContextTypes.DEFAULT_TYPE


def user_ref(user: User) -> UserRef:
    return UserRef("telegram", str(user.id), user.language_code, user.full_name or user.username)


def chat_ref(chat: Chat) -> ChatRef:
    return ChatRef("telegram", str(chat.id), chat.type in (ChatType.GROUP, ChatType.SUPERGROUP), chat.title)


def route_for(message: Message) -> dict[str, Any]:
    route: dict[str, Any] = {"chat_id": message.chat_id, "reply_to": message.message_id}
    if message.is_topic_message and message.message_thread_id:
        route["thread_id"] = message.message_thread_id
    return route


@dataclass(frozen=True, slots=True)
class Pressed:
    """A button press: the query, its data, who pressed it (and their language), the message it is under, and
    where an answer goes (a reply to that message, with the chat's choice for flagged pictures)."""

    query: CallbackQuery
    data: str
    user: UserRef
    lang: Lang
    message: Message | MaybeInaccessibleMessage
    route: dict[str, Any]


class Handlers:
    def __init__(self, core: Core, sender: Sender, board: StatusBoard) -> None:
        self.core = core
        self.sender = sender
        self.board = board

    def install(self, app: Application[Any, Any, Any, Any, Any, Any]) -> None:
        # New messages only: an edited "/draw" must not draw again.
        new = filters.UpdateType.MESSAGE
        app.add_handler(CommandHandler("draw", self.draw, filters=new))
        # "/draw ..." as the caption of a photo, or of an image sent as a file: draw from that picture.
        pictured = filters.PHOTO | filters.Document.IMAGE
        app.add_handler(MessageHandler(new & pictured & filters.CaptionRegex(DRAW_CAPTION), self.draw))
        app.add_handler(CommandHandler(list(TEXT_COMMANDS), self.command, filters=new))
        app.add_handler(CallbackQueryHandler(self.button, pattern=r"^(again|edit):\d+$"))
        app.add_handler(CallbackQueryHandler(self.picture_button, pattern=r"^(up|vary):\d+:\d+$"))
        app.add_handler(CallbackQueryHandler(self.settings_button, pattern=r"^set:"))
        app.add_handler(CallbackQueryHandler(self.stale_button))  # anything else: stop the client's spinner
        app.add_handler(MessageHandler(filters.StatusUpdate.MIGRATE, self.migrated))
        # In a private chat every command is for us, so an unknown one is answered, pointing to /help.
        app.add_handler(MessageHandler(new & filters.ChatType.PRIVATE & filters.COMMAND, self.command))
        app.add_error_handler(self.error)

    # Commands ---------------------------------------------------------------------------------------

    async def draw(self, update: Update, context: Context) -> None:
        """``/draw`` as a text, or as the caption of a picture; a picture carried or replied to is drawn from."""
        message, user = update.effective_message, update.effective_user
        text = None if message is None else message.text or message.caption
        if message is None or user is None or text is None:
            return
        match = DRAW_CAPTION.match(text)
        mention = match.group(1) if match else None
        if mention and mention[1:].casefold() != (context.bot.username or "").casefold():
            return  # a caption's "/draw@OtherBot" is not ours (CommandHandler checks this for texts)
        ref = user_ref(user)
        try:
            origin = f"telegram:{message.chat_id}:{message.message_id}"  # redelivered after a crash: one job
            replied_to = message.reply_to_message
            replied = None if replied_to is None else replied_to.text or replied_to.caption
            picture = picture_of(message) or picture_of(replied_to)
            chat = chat_ref(message.chat)
            route = await self._route(route_for(message), chat)
            await self.core.submit(ref, chat, text, route, origin=origin, replied=replied, picture=picture)
        except SdbotError as exc:  # invalid, over quota, banned...: the answer is the reply
            await self.reply(message, render_error(exc, self.core.language_for(ref)))
        # Accepted: the status reply comes from the sink with the job's first news (queue position).

    async def command(self, update: Update, context: Context) -> None:
        message, user = update.effective_message, update.effective_user
        if message is None or user is None or message.text is None:
            return
        ref = user_ref(user)
        mention = message.text.split(maxsplit=1)[0].partition("@")[2]
        if mention and mention.casefold() != (context.bot.username or "").casefold():
            return  # "/help@OtherBot" in a private chat reaches the catch-all: not ours to answer
        name, args = split_command(message.text)
        if name == "admin":
            args = self._admin_target(message, args)
        chat = chat_ref(message.chat)
        if name == "settings":
            manager = await self._manages(context, message.chat_id, user.id)
            answer = await self.core.handle_command(ref, chat, name, args, manager=manager)
            await self._send_settings(message, answer, self.core.language_for(ref))
            return
        answer = await self.core.handle_command(ref, chat, name, args)
        await self.reply(message, answer)
        if name == "cancel":
            await self._forget_cancelled(ref)

    @staticmethod
    def _admin_target(message: Message, args: str) -> str:
        """``/admin ban`` in answer to someone's message means them."""
        replied = message.reply_to_message
        target = replied.from_user if replied is not None else None
        words = args.split()
        if target is None or target.is_bot or not words:
            return args
        extra = _ADMIN_ON_USER.get(words[0].casefold())
        if extra is None or len(words) != 1 + extra:
            return args
        return " ".join([words[0], f"telegram:{target.id}", *words[1:]])

    async def _forget_cancelled(self, user: UserRef) -> None:
        # The owner's own /cancel is answered by its reply, not the sink: remove the stale status messages.
        for job_id in self.board.jobs_of(user.key):
            job = await self.core.get_job(job_id)
            if job is not None and job.status == "cancelled":
                self.board.finish(job_id, None)

    async def migrated(self, update: Update, context: Context) -> None:
        message = update.effective_message
        if message is None:
            return
        if message.migrate_to_chat_id:
            self.sender.moved(message.chat_id, message.migrate_to_chat_id)
        elif message.migrate_from_chat_id:
            self.sender.moved(message.migrate_from_chat_id, message.chat_id)

    # Buttons ----------------------------------------------------------------------------------------

    async def _pressed(self, update: Update) -> Pressed | None:
        """A button press as the handlers need it, or None for an update without one."""
        query, user = update.callback_query, update.effective_user
        if query is None or user is None or query.message is None or query.data is None:
            return None
        ref, message = user_ref(user), query.message
        route = await self._route(self._route_of(message), chat_ref(message.chat))
        return Pressed(query, query.data, ref, self.core.language_for(ref), message, route)

    async def button(self, update: Update, context: Context) -> None:
        pressed = await self._pressed(update)
        if pressed is None:
            return
        query, ref, lang, message, route = pressed.query, pressed.user, pressed.lang, pressed.message, pressed.route
        action, _, ident = pressed.data.partition(":")
        try:
            if action == "again":
                await self.core.again(int(ident), ref, route, origin=f"telegram:query:{query.id}")
                await self._answer(query)
                return
            text = await self.core.edit_text(int(ident), ref, chat_ref(message.chat))
            await self._answer(query)
            await self._send_edit(route, text, lang)
        except SdbotError as exc:
            await self._answer_error(query, route, render_error(exc, lang))

    async def picture_button(self, update: Update, context: Context) -> None:
        """Upscale or Variations of one picture of a job: the picture is the one Telegram keeps under the file_id
        the sink remembered in the job's route (the buttons' own message, for a lone photo)."""
        pressed = await self._pressed(update)
        if pressed is None:
            return
        query, ref, lang, message, route = pressed.query, pressed.user, pressed.lang, pressed.message, pressed.route
        action, job_id, index = pressed.data.split(":")
        try:
            job = await self.core.shown_job(int(job_id), ref, chat_ref(message.chat))
            ids = job.route.get(PICTURES_KEY) or []
            found = ids[int(index)] if int(index) < len(ids) else None
            if found is None and isinstance(message, Message):
                found = file_id(message)
            if found is None:
                raise SdbotError("picture_gone")
            picture = PictureRef(found, durable=True)
            origin = f"telegram:query:{query.id}"
            rerun = self.core.upscale if action == "up" else self.core.vary
            await rerun(int(job_id), ref, route, picture, origin=origin)
            await self._answer(query)
        except SdbotError as exc:
            await self._answer_error(query, route, render_error(exc, lang))

    async def _route(self, route: dict[str, Any], chat: ChatRef) -> dict[str, Any]:
        """``route`` with what the chat chose for flagged pictures (``/settings flagged spoiler``)."""
        if await self.core.chat_setting(chat, "flagged") == "spoiler":
            route[SPOILER_KEY] = True
        return route

    @staticmethod
    def _route_of(message: Message | MaybeInaccessibleMessage) -> dict[str, Any]:
        """Where a button's answer goes: a reply to the message the button is on."""
        route: dict[str, Any] = {"chat_id": message.chat.id, "reply_to": message.message_id}
        thread_id = message.message_thread_id if isinstance(message, Message) and message.is_topic_message else None
        if thread_id:
            route["thread_id"] = thread_id
        return route

    # /settings ------------------------------------------------------------------------------------

    @staticmethod
    async def _manages(context: Context, chat_id: int, user_id: int) -> bool:
        """Whether Telegram counts the user an admin of the chat (the owner of a private chat is)."""
        if chat_id == user_id:
            return True
        try:
            member = await context.bot.get_chat_member(chat_id, user_id)
        except TelegramError as exc:
            log.info("chat %s: could not tell whether a user administers it (%s)", chat_id, type(exc).__name__)
            return False
        return member.status in (ChatMember.OWNER, ChatMember.ADMINISTRATOR)

    async def _send_settings(self, message: Message, text: str, lang: Lang) -> None:
        """The chat's defaults with a button per enumerated one: pressing opens its choices."""
        thread_id = message.message_thread_id if message.is_topic_message else None
        try:
            markup = settings_keyboard(await self.core.capabilities(), lang)
        except SdbotError:  # the service cannot tell its choices now: the text alone
            markup = None
        await self.sender.send_text(
            message.chat_id, text, reply_to=message.message_id, thread_id=thread_id, markup=markup
        )

    async def settings_button(self, update: Update, context: Context) -> None:
        """``set:<option>`` shows the option's values; ``set:<option>:<n>`` sets the n-th (``-`` unsets it). Any
        member may look; only the chat's admins change (the core checks)."""
        query, user = update.callback_query, update.effective_user
        if query is None or user is None or not isinstance(query.message, Message) or query.data is None:
            return
        message, ref = query.message, user_ref(user)
        lang = self.core.language_for(ref)
        parts = query.data.split(":")
        try:
            caps = await self.core.capabilities()
            if len(parts) == 2:
                await self._answer(query)
                await query.edit_message_reply_markup(reply_markup=values_keyboard(parts[1], caps, lang))
                return
            value = choice_value(parts[1], parts[2], caps)
            manager = await self._manages(context, message.chat_id, user.id)
            text = await self.core.chat_settings(ref, chat_ref(message.chat), {parts[1]: value}, manager=manager)
            await self._answer(query)
            await query.edit_message_text(text, reply_markup=settings_keyboard(caps, lang))
        except TelegramError as exc:  # the message is too old to edit, or unchanged
            log.info("settings message not updated: %s", type(exc).__name__)
        except SdbotError as exc:  # the service cannot tell its choices now
            await self._answer_error(query, self._route_of(message), render_error(exc, lang))
        except (LookupError, ValueError):  # a stale or forged button
            usage = render_error(SdbotError("command_usage", usage=Msg("cmd.settings.usage")), lang)
            await self._answer_error(query, self._route_of(message), usage)

    async def stale_button(self, update: Update, context: Context) -> None:
        if update.callback_query is not None:
            await self._answer(update.callback_query)

    async def _send_edit(self, route: dict[str, Any], command: str, lang: Lang) -> None:
        header = t(lang, "edit.reply")
        text = f"{header}\n{command}"
        # A code entity, not HTML: the prompt is shown exactly as typed, and clients copy it with one tap.
        entity = MessageEntity(MessageEntity.CODE, utf16_len(header) + 1, utf16_len(command))
        chat_id, reply_to, thread_id = route["chat_id"], route["reply_to"], route.get("thread_id")
        if utf16_len(text) <= MAX_TEXT:
            await self.sender.send_text(chat_id, text, reply_to=reply_to, thread_id=thread_id, entities=[entity])
            return
        for piece in [header, *chunks(command)]:
            await self.sender.send_text(chat_id, piece, reply_to=reply_to, thread_id=thread_id)

    @staticmethod
    async def _answer(query: CallbackQuery, text: str | None = None) -> bool:
        try:
            await query.answer(text, show_alert=text is not None)
        except TelegramError as exc:  # too old (over 15 minutes) or answered already: nothing to show
            log.debug("callback query not answered: %s", type(exc).__name__)
            return False
        return True

    async def _answer_error(self, query: CallbackQuery, route: dict[str, Any], text: str) -> None:
        """A short error pops up for the presser alone; a long one is posted as a reply."""
        if utf16_len(text) <= MAX_ALERT and await self._answer(query, text):
            return
        await self._answer(query)
        for piece in chunks(text):
            await self.sender.send_text(
                route["chat_id"], piece, reply_to=route["reply_to"], thread_id=route.get("thread_id")
            )

    # Replies and errors -----------------------------------------------------------------------------

    async def reply(self, message: Message, text: str) -> None:
        thread_id = message.message_thread_id if message.is_topic_message else None
        try:
            for piece in chunks(text):
                await self.sender.send_text(message.chat_id, piece, reply_to=message.message_id, thread_id=thread_id)
        except DeliveryGone:
            log.info("could not answer in chat %s: the bot may not write there", message.chat_id)

    async def error(self, update: object, context: Context) -> None:
        log.error("handling an update failed", exc_info=context.error)
        if not isinstance(update, Update) or update.effective_message is None or update.effective_user is None:
            return
        lang = self.core.language_for(user_ref(update.effective_user))
        try:
            await self.reply(update.effective_message, t(lang, "error.internal"))
        except Exception as exc:
            log.warning("could not tell the user about the failure: %s", type(exc).__name__)
