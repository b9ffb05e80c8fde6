"""Admission: whether a request may become a job, decided atomically, and the limits behind the decision.

The limits, in the order they are checked (admins in ``SDBOT_ADMINS`` are exempt from all of them):

``banned``         an admin banned the user.
``quota_pending``  queued + running jobs per user (``SDBOT_MAX_PENDING``, or the user's override).
``quota_rate``     requests per user in the last 60 s (``SDBOT_RATE_PER_MINUTE``; 0 = no limit).
``quota_daily``    images per user per quota day (``SDBOT_DAILY_IMAGES``; 0 = no limit). ``--n 4`` costs 4.
``quota_chat``     images per group chat / Discord server per day (``SDBOT_CHAT_DAILY_IMAGES`` or the chat's
                   override; 0 = no cap). Private chats have no cap.

A quota day starts at midnight in ``SDBOT_QUOTA_TZ``. Images are charged when the job is admitted and
refunded (the job's ``charged`` set to 0, see :mod:`bot.jobs.job`) when it fails for a reason that is not the user's.

**Atomicity.** Admission (:class:`bot.quotas.admission.Quotas`) is one step of the storage port that checks every
limit and records the job together, so concurrent admissions, from this process or others sharing the
database, can never overspend. When it refuses, a second read explains which limit (by :func:`violation`, the
same rules in Python) for the message; a test checks the storage and the Python rules agree on random states.

**One job per event.** An admission may carry an ``origin``, the platform event that asked (a chat message, a
button press). The same statement inserts nothing when a job of that origin exists (a unique index backs it),
and :class:`AlreadyAdmitted` hands back that job: a command redelivered after a crash (see :mod:`bot.chats.inbox`)
neither queues nor charges twice.

This module holds the rules and records; :mod:`bot.quotas.admission` applies them through the storage port.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from bot.chats.refs import ChatRef, UserRef
from bot.config import Settings
from bot.draw.request import DrawRequest
from bot.errors import SdbotError
from bot.jobs.job import Job
from bot.messages.i18n import Lang

RATE_WINDOW = 60.0  # seconds: SDBOT_RATE_PER_MINUTE counts requests in the last minute
QUOTA_CODES: tuple[str, ...] = ("banned", "quota_pending", "quota_rate", "quota_daily", "quota_chat")
UserLimit = Literal["daily_images", "rate_per_minute", "max_pending"]
USER_LIMITS: tuple[UserLimit, ...] = ("daily_images", "rate_per_minute", "max_pending")


class QuotaError(SdbotError):
    """A limit refused the request: nothing was queued or charged. ``code`` is one of :data:`QUOTA_CODES`;
    ``retry_after`` (seconds) and ``resets_at`` (Unix time) say when it may succeed, where that is known."""

    def __init__(
        self, code: str, /, *, retry_after: float | None = None, resets_at: float | None = None, **params: Any
    ) -> None:
        super().__init__(code, **params)
        self.retry_after = retry_after
        self.resets_at = resets_at


@dataclass(frozen=True, slots=True)
class Limits:
    """The configured defaults; per-user and per-chat overrides in the database take precedence."""

    daily_images: int
    rate_per_minute: int
    max_pending: int
    chat_daily_images: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(settings.daily_images, settings.rate_per_minute, settings.max_pending, settings.chat_daily_images)


@dataclass(frozen=True, slots=True)
class QuotaState:
    """A user's (and chat's) effective limits and usage at one moment. Limits of 0 mean "no limit"."""

    banned: bool
    daily_images: int
    rate_per_minute: int
    max_pending: int
    chat_daily_images: int
    used: int  # images charged today
    chat_used: int
    pending: int  # queued + running jobs
    recent: int  # requests in the last RATE_WINDOW seconds
    daily_override: bool
    chat_override: bool

    @property
    def left(self) -> int | None:
        return None if self.daily_images == 0 else max(0, self.daily_images - self.used)


def violation(state: QuotaState, n: int, *, group_chat: bool, exempt: bool) -> str | None:
    """The first limit a request for ``n`` images breaks, or None. Every storage engine's admission decides the same."""
    if exempt:
        return None
    if state.banned:
        return "banned"
    if state.pending >= state.max_pending:
        return "quota_pending"
    if state.rate_per_minute and state.recent >= state.rate_per_minute:
        return "quota_rate"
    if state.daily_images and state.used + n > state.daily_images:
        return "quota_daily"
    if group_chat and state.chat_daily_images and state.chat_used + n > state.chat_daily_images:
        return "quota_chat"
    return None


@dataclass(frozen=True, slots=True)
class Admission:
    """Everything a new job needs. ``seed`` is the one it will draw with (the user's, or freshly drawn)."""

    user: UserRef
    chat: ChatRef
    request: DrawRequest
    route: dict[str, Any]
    backend: str
    lang: Lang
    seed: int
    exempt: bool
    parent_id: int | None = None
    origin: str | None = None  # the platform event asking; one job per origin (see AlreadyAdmitted)


class AlreadyAdmitted(Exception):
    """The admission's ``origin`` already has a job: the same platform event arrived twice (redelivered after a
    crash). Nothing new was queued or charged; ``job`` is the one it made the first time."""

    def __init__(self, job: Job) -> None:
        super().__init__(job.id)
        self.job = job
