"""Admission: whether a request may become a job, decided atomically, and the limits behind the decision.

The limits, in the order they are checked (admins in ``SDBOT_ADMINS`` are exempt from all of them):

``banned``         an admin banned the user.
``quota_pending``  queued + running jobs per user (``SDBOT_MAX_PENDING``, or the user's override).
``quota_rate``     requests per user in the last 60 s (``SDBOT_RATE_PER_MINUTE``; 0 = no limit).
``quota_daily``    images per user per quota day (``SDBOT_DAILY_IMAGES``; 0 = no limit). ``--n 4`` costs 4.
``quota_chat``     images per group chat / Discord server per day (``SDBOT_CHAT_DAILY_IMAGES`` or the chat's
                   override; 0 = no cap). Private chats have no cap.

A quota day starts at midnight in ``SDBOT_QUOTA_TZ``. Images are charged when the job is admitted and
refunded (the job's ``charged`` set to 0, see :mod:`bot.jobs`) when it fails for a reason that is not the user's.

**Atomicity.** :meth:`Quotas.admit` is one ``INSERT INTO jobs ... SELECT ... WHERE <every limit holds>
RETURNING *``: SQLite evaluates the limits and inserts the job under the database write lock, and the
``jobs_charge`` trigger adds the images to the day's counters in the same statement. Concurrent admissions,
from this process or others sharing the file, can therefore never overspend. When no row comes back the
request was refused; a second read explains which limit (by :func:`violation`, the same rules in Python) for
the message. A test checks the SQL and the Python rules agree on random states.

**One job per event.** An admission may carry an ``origin``, the platform event that asked (a chat message, a
button press). The same statement inserts nothing when a job of that origin exists (a unique index backs it),
and :class:`AlreadyAdmitted` hands back that job: a command redelivered after a crash (see :mod:`bot.inbox`)
neither queues nor charges twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from bot import days
from bot.config import Settings
from bot.errors import SdbotError
from bot.i18n import Lang
from bot.jobs import Job
from bot.people import ChatRef, UserRef
from bot.request import DrawRequest
from bot.store import Statement, Store

RATE_WINDOW = 60.0  # seconds: SDBOT_RATE_PER_MINUTE counts requests in the last minute
QUOTA_CODES: tuple[str, ...] = ("banned", "quota_pending", "quota_rate", "quota_daily", "quota_chat")
UserLimit = Literal["daily_images", "rate_per_minute", "max_pending"]
USER_LIMITS: tuple[UserLimit, ...] = ("daily_images", "rate_per_minute", "max_pending")
_EXPLAIN_TRIES = 5


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
    """The first limit a request for ``n`` images breaks, or None. Mirrors the WHERE clause of ``_ADMIT``."""
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
    start: bool = False  # recorded as running at once, as a claim would (a slot is held for it)


class AlreadyAdmitted(Exception):
    """The admission's ``origin`` already has a job: the same platform event arrived twice (redelivered after a
    crash). Nothing new was queued or charged; ``job`` is the one it made the first time."""

    def __init__(self, job: Job) -> None:
        super().__init__(job.id)
        self.job = job


# The effective limits: overrides where an admin set one, else the configured defaults.
_LIMITS = """
    SELECT coalesce(u.banned, 0) AS banned,
           coalesce(u.daily_images, :daily) AS daily_images,
           coalesce(u.rate_per_minute, :rate) AS rate_per_minute,
           coalesce(u.max_pending, :max_pending) AS max_pending,
           coalesce(c.daily_images, :chat_daily) AS chat_daily_images,
           u.daily_images IS NOT NULL AS daily_override,
           c.daily_images IS NOT NULL AS chat_override
    FROM (SELECT 1) LEFT JOIN users AS u ON u.key = :user LEFT JOIN chats AS c ON c.key = :chat
"""
_PENDING = "(SELECT count(*) FROM jobs WHERE user_key = :user AND status IN ('queued', 'running'))"
_RECENT = "(SELECT count(*) FROM jobs WHERE user_key = :user AND created_at > :now - :window)"
_USED = "coalesce((SELECT images FROM usage WHERE scope = 'user' AND key = :user AND day = :day), 0)"
_CHAT_USED = "coalesce((SELECT images FROM usage WHERE scope = 'chat' AND key = :chat AND day = :day), 0)"

_ADMIT = f"""
    INSERT INTO jobs (user_key, platform, chat_key, group_chat, backend, request, route, lang, status,
                      images, charged, quota_day, seed, parent_id, origin, created_at, started_at, attempts)
    SELECT :user, :platform, :chat, :group_chat, :backend, :request, :route, :lang,
           CASE WHEN :start THEN 'running' ELSE 'queued' END,
           :n, :n, :day, :seed, :parent_id, :origin, :now, CASE WHEN :start THEN :now END, :start
    FROM ({_LIMITS}) AS lim
    WHERE NOT EXISTS (SELECT 1 FROM jobs WHERE origin = :origin) AND (:exempt OR (
        NOT lim.banned
        AND {_PENDING} < lim.max_pending
        AND (lim.rate_per_minute = 0 OR {_RECENT} < lim.rate_per_minute)
        AND (lim.daily_images = 0 OR {_USED} + :n <= lim.daily_images)
        AND (NOT :group_chat OR lim.chat_daily_images = 0 OR {_CHAT_USED} + :n <= lim.chat_daily_images)
    ))
    RETURNING *
"""

_STATE = f"""
    SELECT lim.*, {_PENDING} AS pending, {_RECENT} AS recent, {_USED} AS used, {_CHAT_USED} AS chat_used
    FROM ({_LIMITS}) AS lim
"""


class Quotas:
    """Admission and limit administration on the shared :class:`Store`."""

    def __init__(self, store: Store, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._settings = settings
        self._clock = clock
        self.limits = Limits.from_settings(settings)

    # Days -------------------------------------------------------------------------------------------

    def now(self) -> float:
        return self._clock()

    def today(self, now: float | None = None) -> str:
        return days.day_of(self._clock() if now is None else now, self._settings.quota_tz)

    def next_reset(self, now: float | None = None) -> float:
        return days.next_day_start(self._clock() if now is None else now, self._settings.quota_tz)

    def is_admin(self, user_key: str) -> bool:
        return user_key in self._settings.admins

    # Admission --------------------------------------------------------------------------------------

    async def admit(self, a: Admission, *, before: Sequence[Statement] = ()) -> Job:
        """Insert ``a`` as a queued job (running, with ``a.start``) with its images charged, or raise
        :class:`QuotaError`, or :class:`AlreadyAdmitted` when ``a.origin`` has its job already (checked first: a
        redelivered command finds its job even when the job itself now fills the user's quota). ``before``:
        writes to run just before the admission, in the same trip to the database (the user's and chat's rows)."""
        for _ in range(_EXPLAIN_TRIES):
            now = self._clock()
            params = self._params(a.user.key, a.chat.key, now) | {
                "platform": a.user.platform,
                "group_chat": int(a.chat.is_group),
                "backend": a.backend,
                "request": a.request.to_json(),
                "route": json.dumps(a.route, ensure_ascii=False, separators=(",", ":")),
                "lang": a.lang,
                "n": a.request.n,
                "seed": a.seed,
                "parent_id": a.parent_id,
                "exempt": int(a.exempt),
                "origin": a.origin,
                "start": int(a.start),
            }
            rows = await self._store.fetchall(_ADMIT, params, before=before)
            before = ()
            row = rows[0] if rows else None
            if row is not None:
                return Job.from_row(row)
            if a.origin is not None:
                existing = await self._store.fetchone("SELECT * FROM jobs WHERE origin = ?", (a.origin,))
                if existing is not None:
                    raise AlreadyAdmitted(Job.from_row(existing))
            state = await self.state(a.user.key, a.chat.key, now=now)
            error = await self._explain(state, a, now)
            if error is not None:
                raise error
            # Nothing is over the limit any more (a job ended between the two statements): try again.
        raise SdbotError("internal")

    async def state(self, user_key: str, chat_key: str | None = None, *, now: float | None = None) -> QuotaState:
        """Effective limits and today's usage of a user (and chat, when given)."""
        now = self._clock() if now is None else now
        row = await self._store.fetchone(_STATE, self._params(user_key, chat_key or "", now))
        assert row is not None  # the LEFT JOINs always yield one row
        return QuotaState(
            banned=bool(row["banned"]),
            daily_images=row["daily_images"],
            rate_per_minute=row["rate_per_minute"],
            max_pending=row["max_pending"],
            chat_daily_images=row["chat_daily_images"],
            used=row["used"],
            chat_used=row["chat_used"],
            pending=row["pending"],
            recent=row["recent"],
            daily_override=bool(row["daily_override"]),
            chat_override=bool(row["chat_override"]),
        )

    async def _explain(self, state: QuotaState, a: Admission, now: float) -> QuotaError | None:
        n = a.request.n
        code = violation(state, n, group_chat=a.chat.is_group, exempt=a.exempt)
        if code is None:
            return None
        if code == "banned":
            return QuotaError(code)
        if code == "quota_pending":
            return QuotaError(code, pending=state.pending, count=state.pending, limit=state.max_pending)
        if code == "quota_rate":
            wait = await self.rate_wait(a.user.key, state.rate_per_minute, now)
            return QuotaError(code, retry_after=wait, limit=state.rate_per_minute, wait=days.wait_msg(wait))
        reset = self.next_reset(now)
        if code == "quota_daily":
            used, limit = state.used, state.daily_images
        else:
            used, limit = state.chat_used, state.chat_daily_images
        return QuotaError(
            code,
            retry_after=reset - now,
            resets_at=reset,
            used=used,
            limit=limit,
            count=limit,
            requested=n,
            left=max(0, limit - used),
            reset=days.reset_msg(reset, now, self._settings.quota_tz),
        )

    async def rate_wait(self, user_key: str, rate: int, now: float) -> float:
        """Seconds until fewer than ``rate`` requests remain in the window: when the rate-th newest leaves."""
        row = await self._store.fetchone(
            "SELECT created_at FROM jobs WHERE user_key = ? AND created_at > ? "
            "ORDER BY created_at DESC LIMIT 1 OFFSET ?",
            (user_key, now - RATE_WINDOW, max(rate - 1, 0)),
        )
        return 0.0 if row is None else max(0.0, row["created_at"] + RATE_WINDOW - now)

    def _params(self, user_key: str, chat_key: str, now: float) -> dict[str, Any]:
        return {
            "user": user_key,
            "chat": chat_key,
            "now": now,
            "window": RATE_WINDOW,
            "day": self.today(now),
            "daily": self.limits.daily_images,
            "rate": self.limits.rate_per_minute,
            "max_pending": self.limits.max_pending,
            "chat_daily": self.limits.chat_daily_images,
        }

    # Administration ---------------------------------------------------------------------------------

    async def set_user_limit(self, user_key: str, limit: UserLimit, value: int | None) -> None:
        """Override one of the user's limits (``None``: back to the configured default)."""
        await self.set_user_limits(user_key, {limit: value})

    async def set_user_limits(self, user_key: str, values: Mapping[UserLimit, int | None]) -> None:
        """Override several of the user's limits in one statement: all of them change, or none."""
        for limit, value in values.items():
            if limit not in USER_LIMITS:
                raise ValueError(limit)
            if value is not None and value < (1 if limit == "max_pending" else 0):
                raise ValueError(value)
        update = ", ".join(f"{limit} = excluded.{limit}" for limit in values)
        await self._upsert_user(user_key, update, {str(limit): value for limit, value in values.items()})

    async def set_banned(self, user_key: str, banned: bool) -> None:
        await self._upsert_user(user_key, "banned = excluded.banned", {"banned": int(banned)})

    async def set_chat_limit(self, chat_key: str, value: int | None) -> None:
        """Override the chat's daily image cap (``None``: back to ``SDBOT_CHAT_DAILY_IMAGES``)."""
        if value is not None and value < 0:
            raise ValueError(value)
        platform, _, chat_id = chat_key.partition(":")
        now = self._clock()
        # A chat an admin configures before anyone drew there is taken to be a group: caps apply only there.
        await self._store.execute(
            "INSERT INTO chats (key, platform, chat_id, is_group, daily_images, created_at, updated_at) "
            "VALUES (?, ?, ?, 1, ?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET daily_images = excluded.daily_images, updated_at = excluded.updated_at",
            (chat_key, platform, chat_id, value, now, now),
        )

    async def reset_usage(self, scope: Literal["user", "chat"], key: str, day: str | None = None) -> int:
        """Forgive the images ``key`` used on ``day`` (today by default); returns how many were forgiven."""
        row = await self._store.fetchone(
            "DELETE FROM usage WHERE scope = ? AND key = ? AND day = ? RETURNING images",
            (scope, key, day or self.today()),
        )
        return int(row["images"]) if row else 0

    async def _upsert_user(self, user_key: str, update: str, values: dict[str, Any]) -> None:
        platform, _, user_id = user_key.partition(":")
        now = self._clock()
        columns = ", ".join(values)
        marks = ", ".join(f":{c}" for c in values)
        await self._store.execute(
            f"INSERT INTO users (key, platform, user_id, {columns}, created_at, updated_at) "
            f"VALUES (:key, :platform, :user_id, {marks}, :now, :now) "
            f"ON CONFLICT (key) DO UPDATE SET {update}, updated_at = excluded.updated_at",
            {"key": user_key, "platform": platform, "user_id": user_id, "now": now, **values},
        )
