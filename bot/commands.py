"""The platform-independent text commands and the texts adapters show for jobs, in zh and en."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Mapping
from datetime import datetime
from typing import Any

from bot.chats import policy
from bot.chats.directory import Directory
from bot.chats.refs import ChatRef, UserRef, parse_key
from bot.config import COUNT_MAX, Settings
from bot.draw import defaults as draw_defaults
from bot.draw import params
from bot.draw.capabilities import Capabilities
from bot.draw.options import BY_NAME, OPTIONS, SPELLINGS
from bot.errors import DrawError, SdbotError
from bot.jobs.job import Job, JobEvent
from bot.messages.i18n import Lang, Msg, normalize_language, render_error, t
from bot.messages.presentation import describe
from bot.moderation.rules import Rule, check_pattern
from bot.quotas import days
from bot.quotas.admission import Quotas
from bot.storage import Storage

Cancel = Callable[[UserRef, int | None], Awaitable[list[Job]]]

log = logging.getLogger(__name__)

# What people type after /lang besides codes like zh-CN.
_LANGUAGE_WORDS: dict[str, Lang | None] = {
    "auto": None,
    "自动": None,
    "chinese": "zh",
    "中文": "zh",
    "汉语": "zh",
    "english": "en",
    "英文": "en",
    "英语": "en",
}
STATUSES = ("queued", "running", "done", "failed", "cancelled")
REFUSALS_SHOWN = 20  # /admin block refusals: the newest


def describe_event(event: JobEvent, lang: Lang) -> str:
    """``#3 in queue`` / ``Drawing… 42%``: the text for a :class:`~bot.jobs.job.JobEvent`."""
    if event.state == "queued":
        return t(lang, "job.queued", position=event.position)
    if event.progress is None:
        return t(lang, "job.running")
    return t(lang, "job.running_progress", percent=round(event.progress * 100))


def describe_failure(error: Exception, refunded: bool, lang: Lang) -> str:
    """What to tell a user whose job failed; says so when its images still count against the quota."""
    text = render_error(error, lang)
    return text if refunded else text + "\n" + t(lang, "job.charged_note")


def images_value(limit: int) -> Msg:
    """A daily image limit for display: ``20 images``, or ``unlimited`` for 0."""
    return Msg("value.images", {"count": limit}) if limit else Msg("value.unlimited")


class Commands:
    def __init__(self, settings: Settings, quotas: Quotas, storage: Storage, directory: Directory) -> None:
        self._settings = settings
        self._quotas = quotas
        self._storage = storage
        self._directory = directory

    async def handle(
        self,
        user: UserRef,
        chat: ChatRef,
        name: str,
        args: str,
        *,
        capabilities: Callable[[], Awaitable[Capabilities]],
        cancel: Cancel,
        platforms: Collection[str],
        private: bool = False,
        manager: bool = False,
    ) -> str:
        """The reply to a text command. ``cancel`` is the core's (it also takes the jobs out of the queue);
        ``platforms``: those a user key may name (the adapters this process serves); ``private``: only the user
        sees the reply (Discord's ephemeral answers), as in a private chat; ``manager``: the platform counts the user
        an admin of the chat (``/settings``)."""
        lang = self._directory.language_for(user)
        command = name.strip().lstrip("/").split("@", 1)[0].casefold()
        words = args.split()
        admin = self._quotas.is_admin(user.key)
        try:
            if command in ("help", "start"):
                return self.help_text(lang, await capabilities(), admin=admin)
            if command == "quota":
                return await self.quota_report(lang, user.key, chat if chat.is_group else None, own=True)
            if command == "lang":
                return await self._lang(user, words)
            if command == "cancel":
                return await self._cancel(cancel, user, words, lang)
            if command == "settings":
                return await self._settings_command(user, chat, args, manager, capabilities=capabilities)
            if command == "admin":
                if not admin:
                    raise SdbotError("admin_only")
                if words[:1] == ["block"]:
                    if chat.is_group and not private:  # the list and who was refused are for admins' eyes only
                        raise SdbotError("block_private")
                    return await self.block(user.key, args.split(None, 1)[1] if len(words) > 1 else "", lang)
                return await self._admin(user, chat, words, lang, platforms)
            raise SdbotError("command_unknown", command=f"/{command}")
        except SdbotError as exc:
            return render_error(exc, lang)
        except Exception:
            log.exception("command /%s failed", command)
            return t(lang, "error.internal")

    # /help ------------------------------------------------------------------------------------------

    def help_text(self, lang: Lang, caps: Capabilities, *, admin: bool) -> str:
        lines = [f"  --{o.name}   {describe(o, lang, caps)}" for o in OPTIONS if o.supported(caps)]
        if caps.aspect_ratios:  # the service chooses the size: say how a --size is drawn
            lines.append("  " + t(lang, "cmd.help.ratios", ratios=caps.aspect_ratios))
        text = t(lang, "cmd.help", options="\n".join(lines))
        if caps.image_to_image:  # how to give it a picture, on each platform
            text += "\n\n" + t(lang, "cmd.help.pictures")
        return text + "\n\n" + t(lang, "cmd.help.admin") if admin else text

    # /quota -----------------------------------------------------------------------------------------

    async def quota_report(self, lang: Lang, user_key: str, chat: ChatRef | None = None, *, own: bool = False) -> str:
        """``/quota`` (``own``) and ``sdbot quota show`` (about someone): usage, limits, reset time."""
        now = self._quotas.now()
        state = await self._quotas.state(user_key, chat.key if chat else None, now=now)
        title = "cmd.quota.title_own" if own else "cmd.quota.title_user"
        lines = [t(lang, title, user=user_key, day=self._quotas.today(now))]
        if self._quotas.is_admin(user_key):
            lines.append(t(lang, "cmd.quota.admin"))
        if state.banned:
            lines.append(t(lang, "cmd.quota.banned"))
        if state.daily_images:
            lines.append(t(lang, "cmd.quota.images", used=state.used, limit=state.daily_images, left=state.left))
        else:
            lines.append(t(lang, "cmd.quota.images_unlimited", used=state.used))
        if state.rate_per_minute:
            lines.append(t(lang, "cmd.quota.rate", limit=state.rate_per_minute))
        else:
            lines.append(t(lang, "cmd.quota.rate_unlimited"))
        lines.append(t(lang, "cmd.quota.pending", pending=state.pending, limit=state.max_pending))
        if chat is not None:
            lines.append(self.chat_usage_line(lang, state.chat_used, state.chat_daily_images))
        reset = self._quotas.next_reset(now)
        lines.append(t(lang, "cmd.quota.reset", reset=days.reset_msg(reset, now, self._settings.quota_tz)))
        return "\n".join(lines)

    # /lang ------------------------------------------------------------------------------------------

    async def _lang(self, user: UserRef, words: list[str]) -> str:
        lang = self._directory.language_for(user)
        if not words:
            return t(lang, "cmd.lang.current", language=Msg(f"lang.name.{lang}"))
        word = words[0].casefold()
        if word in _LANGUAGE_WORDS:
            choice = _LANGUAGE_WORDS[word]
        else:
            choice = normalize_language(word)
            if choice is None or len(words) > 1:
                raise SdbotError("command_usage", usage="/lang zh|en|auto")
        await self._directory.set_language(user, choice)
        lang = self._directory.language_for(user)
        key = "cmd.lang.auto" if choice is None else "cmd.lang.set"
        return t(lang, key, language=Msg(f"lang.name.{lang}"))

    # /cancel ----------------------------------------------------------------------------------------

    async def _cancel(self, cancel: Cancel, user: UserRef, words: list[str], lang: Lang) -> str:
        job_id = None
        if words:
            text = words[0].lstrip("#")
            if len(words) > 1 or not text.isdigit():
                raise SdbotError("command_usage", usage="/cancel [#job]")
            job_id = int(text)
        cancelled = await cancel(user, job_id)
        return t(
            lang,
            "cmd.cancel.done",
            jobs=[f"#{job.id}" for job in cancelled],
            count=sum(job.images for job in cancelled),
        )

    # /admin -----------------------------------------------------------------------------------------

    async def _admin(
        self, admin: UserRef, chat: ChatRef, words: list[str], lang: Lang, platforms: Collection[str]
    ) -> str:
        sub = words[0].casefold() if words else ""
        rest = words[1:]
        if sub == "stats" and not rest:
            return await self.stats_report(lang)
        if sub == "quota" and len(rest) == 2:
            target = parse_key(rest[0], platforms, admin.platform)
            value = limit_arg(rest[1])
            await self._quotas.set_user_limit(target, "daily_images", value)
            return self.limit_set_text(lang, target, value, chat=False)
        if sub == "chatquota" and len(rest) == 1:
            value = limit_arg(rest[0])
            await self._directory.touch_chat(chat)
            await self._quotas.set_chat_limit(chat.key, value)
            return self.limit_set_text(lang, chat.key, value, chat=True)
        if sub in ("ban", "unban") and len(rest) == 1:
            target = parse_key(rest[0], platforms, admin.platform)
            if sub == "ban" and self._quotas.is_admin(target):
                raise SdbotError("cannot_ban_admin", user=target)
            await self._quotas.set_banned(target, sub == "ban")
            return t(lang, f"cmd.admin.{sub}", user=target)
        if sub == "reset" and len(rest) == 1:
            target = parse_key(rest[0], platforms, admin.platform)
            forgiven = await self._quotas.reset_usage("user", target)
            return t(lang, "cmd.admin.reset", user=target, count=forgiven)
        raise SdbotError("command_usage", usage=Msg("cmd.help.admin"))

    # /settings --------------------------------------------------------------------------------------

    async def chat_settings(
        self,
        user: UserRef,
        chat: ChatRef,
        changes: Mapping[str, str | None],
        *,
        capabilities: Callable[[], Awaitable[Capabilities]],
        manager: bool,
    ) -> str:
        """Apply ``changes`` (see :meth:`bot.core.Core.chat_settings`), then the chat's defaults as they are."""
        lang = self._directory.language_for(user)
        try:
            if changes:
                if not (manager or self._quotas.is_admin(user.key)):
                    raise SdbotError("settings_admin_only")
                caps = await capabilities()
                checked = {name: None if v is None else _checked(name, v, caps, chat) for name, v in changes.items()}
                await self._directory.touch_chat(chat)
                for name, value in checked.items():
                    await self._storage.channels.set_default(chat.key, name, value, user.key)
            return await self.settings_report(lang, chat)
        except SdbotError as exc:
            return render_error(exc, lang)

    async def settings_report(self, lang: Lang, chat: ChatRef) -> str:
        current = await self._storage.channels.defaults(chat.key)
        lines = [t(lang, "cmd.settings.title")]
        for name in draw_defaults.SETTABLE:
            option = BY_NAME[name]
            value = current.get(name)
            shown = option.label(lang, value) if value is not None else Msg("cmd.settings.unset")
            lines.append(t(lang, "cmd.settings.line", option=option.zh if lang == "zh" else name, value=shown))
        for name in policy.POLICIES:
            if policy.offered(name, chat.platform):
                value = current.get(name, policy.POLICIES[name][0])
                label = Msg(f"setting.{name}")
                lines.append(t(lang, "cmd.settings.line", option=label, value=Msg(f"setting.{name}.{value}")))
        return "\n".join(lines)

    async def _settings_command(self, user: UserRef, chat: ChatRef, args: str, manager: bool, **kw: Any) -> str:
        """``/settings`` as text: none (show), ``reset``, ``<option> <value>`` or ``<option> default``."""
        words = args.split()
        if not words:
            return await self.chat_settings(user, chat, {}, manager=manager, **kw)
        if words[0].casefold() in ("reset", "重置") and len(words) == 1:
            names = [*draw_defaults.SETTABLE, *(p for p in policy.POLICIES if policy.offered(p, chat.platform))]
            changes: dict[str, str | None] = dict.fromkeys(names)
            return await self.chat_settings(user, chat, changes, manager=manager, **kw)
        word = words[0].lstrip("-—–－").casefold()
        name = SPELLINGS.get(word) or policy.NAMES.get(word) or (word if word in policy.POLICIES else None)
        if name is None or len(words) < 2:
            raise SdbotError("command_usage", usage=Msg("cmd.settings.usage"))
        value = args.split(None, 1)[1].strip()
        unset = value.casefold() in ("default", "默认")
        return await self.chat_settings(user, chat, {name: None if unset else value}, manager=manager, **kw)

    # /admin block ----------------------------------------------------------------------------------

    async def block(self, admin: str, text: str, lang: Lang) -> str:
        """``add <words>``, ``regex <pattern>``, ``remove <#rule>``, ``list``, ``refusals``: the block list, from
        chat (``/admin block ...``) and the command line (``sdbot block ...``). ``admin`` is who changes it."""
        words = text.split()
        sub = words[0].casefold() if words else ""
        moderation = self._storage.moderation
        if sub in ("add", "regex", "strict") and len(words) > 1:
            kind = "regex" if sub == "regex" else "word"
            level = "strict" if sub == "strict" else "all"
            pattern = check_pattern(kind, text.split(None, 1)[1])
            rule, added = await moderation.add_rule(kind, pattern, admin, level)
            key = "cmd.block.added" if added else "cmd.block.exists"
            return t(lang, key, rule=rule.id, kind=_kind(rule), pattern=rule.pattern)
        if sub == "remove" and len(words) == 2:
            number = params.whole_number(words[1].lstrip("#"), 1, COUNT_MAX)
            removed = None if number is None else await moderation.remove_rule(number)
            if removed is None:
                raise SdbotError("block_not_found", rule=words[1].lstrip("#")[:20])
            return t(lang, "cmd.block.removed", rule=removed.id, pattern=removed.pattern)
        if sub == "list" and len(words) == 1:
            rules = await moderation.rules()
            if not rules:
                return t(lang, "cmd.block.empty")
            lines = [t(lang, "cmd.block.rule", rule=r.id, kind=_kind(r), pattern=r.pattern) for r in rules]
            return "\n".join([t(lang, "cmd.block.list", total=len(rules)), *lines])
        if sub == "refusals" and len(words) == 1:
            refusals = await moderation.refusals(REFUSALS_SHOWN)
            if not refusals:
                return t(lang, "cmd.block.no_refusals")
            tz = self._settings.quota_tz
            lines = [
                t(
                    lang,
                    "cmd.block.refusal",
                    at=datetime.fromtimestamp(r.at, tz).strftime("%Y-%m-%d %H:%M"),
                    user=r.user,
                    chat=r.chat,
                    rule=r.rule_id if r.rule_id is not None else Msg("cmd.block.removed_rule"),
                    pattern=r.pattern,
                    field=r.field,
                )
                for r in refusals
            ]
            return "\n".join([t(lang, "cmd.block.refusals", total=len(refusals)), *lines])
        raise SdbotError("command_usage", usage=Msg("cmd.help.admin"))

    def limit_set_text(self, lang: Lang, key: str, value: int | None, *, chat: bool) -> str:
        default = self._settings.chat_daily_images if chat else self._settings.daily_images
        if value is None:
            return t(lang, "cmd.admin.limit_default", target=key, limit=images_value(default))
        return t(lang, "cmd.admin.limit_set", target=key, limit=images_value(value))

    async def chat_report(self, lang: Lang, chat_key: str) -> str:
        """``sdbot quota show --chat``: a group chat's images today against its cap."""
        now = self._quotas.now()
        state = await self._quotas.state("", chat_key, now=now)
        reset = days.reset_msg(self._quotas.next_reset(now), now, self._settings.quota_tz)
        return "\n".join(
            [
                t(lang, "cmd.quota.title_user", user=chat_key, day=self._quotas.today(now)),
                self.chat_usage_line(lang, state.chat_used, state.chat_daily_images),
                t(lang, "cmd.quota.reset", reset=reset),
            ]
        )

    @staticmethod
    def chat_usage_line(lang: Lang, used: int, limit: int) -> str:
        if limit:
            return t(lang, "cmd.quota.chat", used=used, count=limit)
        return t(lang, "cmd.quota.chat_unlimited", count=used)

    async def stats_report(self, lang: Lang, *, chat_key: str | None = None) -> str:
        """``/admin stats`` and ``sdbot stats``: today's jobs, images, failures by code, busiest users; of one
        chat only with ``chat_key`` (Discord's ``/sdadmin stats`` for a server's managers)."""
        stats = await self._storage.jobs.stats(self._quotas.today(), chat=chat_key)
        names = await self._directory.display_names([key for key, _ in stats.busiest])
        busiest = [
            f"{names[key]} ({key}) {images}" if key in names else f"{key} {images}" for key, images in stats.busiest
        ]
        failures = [f"{code} ×{count}" for code, count in stats.failures]
        services = [
            t(lang, "cmd.stats.service", name=name, jobs=jobs, images=images) for name, jobs, images in stats.services
        ]
        counts = {status: stats.jobs.get(status, 0) for status in STATUSES}
        lines = [
            t(lang, "cmd.stats.title", day=stats.day, zone=self._settings.quota_tz.key),
            t(lang, "cmd.stats.jobs", total=sum(stats.jobs.values()), **counts),
            t(lang, "cmd.stats.images", delivered=stats.images_delivered, charged=stats.images_charged),
            t(lang, "cmd.stats.failures", failures=failures or None),
            t(lang, "cmd.stats.busiest", users=busiest or None),
            t(lang, "cmd.stats.services", services=services or None),
            t(lang, "cmd.stats.refused", refused=await self._storage.moderation.refused_on(stats.day, chat_key)),
        ]
        return "\n".join(lines)


def _checked(name: str, value: str, caps: Capabilities, chat: ChatRef) -> str:
    """A /settings value as stored: a moderation setting's choice, or a /draw default checked as /draw would."""
    if name in policy.POLICIES:
        if not policy.offered(name, chat.platform):
            raise DrawError("setting_unknown", option=name, settings=", ".join(draw_defaults.SETTABLE))
        return policy.checked(name, value)
    return draw_defaults.checked(name, value, caps)


def _kind(rule: Rule) -> str:
    """How a rule is listed: ``word``, ``regex``, ``word, strict``."""
    return f"{rule.kind}, strict" if rule.level == "strict" else rule.kind


def limit_arg(text: str) -> int | None:
    """``default`` -> None (the configured default); a whole number >= 0 (0 = no limit)."""
    word = text.casefold()
    if word in ("default", "默认"):
        return None
    value = params.whole_number(word, 0, COUNT_MAX)
    if value is None:
        raise SdbotError("command_usage", usage=Msg("cmd.help.admin"))
    return value
