"""Admission: whether a request may become a job, decided atomically, and the limits behind the decision."""

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
    picture: bytes | None = None  # the picture it draws from, kept beside the job until it ends (no platform ref)
    cost: int | None = None  # images charged, when not ``request.n`` (an upscale: SDBOT_UPSCALE_COST)

    @property
    def images(self) -> int:
        return self.request.n if self.cost is None else self.cost


class AlreadyAdmitted(Exception):
    """The admission's ``origin`` already has a job: the same platform event arrived twice (redelivered after a
    crash). Nothing new was queued or charged; ``job`` is the one it made the first time."""

    def __init__(self, job: Job) -> None:
        super().__init__(job.id)
        self.job = job
