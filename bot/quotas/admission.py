"""Admission: whether a request becomes a job, decided by the storage port in one step, explained when refused."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Literal

from bot.config import Settings
from bot.errors import SdbotError
from bot.jobs.job import Job
from bot.quotas import days
from bot.quotas.rules import (
    Admission,
    AlreadyAdmitted,
    Limits,
    QuotaError,
    QuotaState,
    UserLimit,
    violation,
)
from bot.storage import Storage

_EXPLAIN_TRIES = 5


class Quotas:
    """Admission and limit administration on a :class:`~bot.storage.Storage`."""

    def __init__(self, storage: Storage, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self._storage = storage
        self._settings = settings
        self._clock = clock
        self.limits = Limits.from_settings(settings)

    def now(self) -> float:
        return self._clock()

    def today(self, now: float | None = None) -> str:
        return days.day_of(self._clock() if now is None else now, self._settings.quota_tz)

    def next_reset(self, now: float | None = None) -> float:
        return days.next_day_start(self._clock() if now is None else now, self._settings.quota_tz)

    def is_admin(self, user_key: str) -> bool:
        return user_key in self._settings.admins

    async def admit(self, a: Admission) -> Job:
        """Queue ``a`` with its images charged, or raise :class:`QuotaError`, or :class:`AlreadyAdmitted` when
        ``a.origin`` has its job already (checked first: a redelivered command finds its job even when the job
        itself now fills the user's quota)."""
        for _ in range(_EXPLAIN_TRIES):
            now = self._clock()
            day = self.today(now)
            job = await self._storage.jobs.admit(a, self.limits, day, now)
            if job is not None:
                return job
            if a.origin is not None and (existing := await self._storage.jobs.by_origin(a.origin)) is not None:
                raise AlreadyAdmitted(existing)
            state = await self._storage.quotas.state(a.user.key, a.chat.key, self.limits, day, now)
            error = await self._explain(state, a, now)
            if error is not None:
                raise error
            # Nothing is over the limit any more (a job ended between the two steps): try again.
        raise SdbotError("internal")

    async def state(self, user_key: str, chat_key: str | None = None, *, now: float | None = None) -> QuotaState:
        """Effective limits and today's usage of a user (and chat, when given)."""
        now = self._clock() if now is None else now
        return await self._storage.quotas.state(user_key, chat_key or "", self.limits, self.today(now), now)

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
            wait = await self._storage.quotas.rate_wait(a.user.key, state.rate_per_minute, now)
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

    # Administration ---------------------------------------------------------------------------------

    async def set_user_limit(self, user_key: str, limit: UserLimit, value: int | None) -> None:
        """Override one of the user's limits (``None``: back to the configured default)."""
        await self.set_user_limits(user_key, {limit: value})

    async def set_user_limits(self, user_key: str, values: Mapping[UserLimit, int | None]) -> None:
        """Override several of the user's limits at once: all of them change, or none."""
        for limit, value in values.items():  # the limit names themselves: the storage checks them
            if value is not None and value < (1 if limit == "max_pending" else 0):
                raise ValueError(value)
        await self._storage.quotas.set_user_limits(user_key, values)

    async def set_banned(self, user_key: str, banned: bool) -> None:
        await self._storage.quotas.set_banned(user_key, banned)

    async def set_chat_limit(self, chat_key: str, value: int | None) -> None:
        """Override the chat's daily image cap (``None``: back to ``SDBOT_CHAT_DAILY_IMAGES``)."""
        if value is not None and value < 0:
            raise ValueError(value)
        await self._storage.quotas.set_chat_limit(chat_key, value)

    async def reset_usage(self, scope: Literal["user", "chat"], key: str, day: str | None = None) -> int:
        """Forgive the images ``key`` used on ``day`` (today by default); returns how many were forgiven."""
        return await self._storage.quotas.reset_usage(scope, key, day or self.today())
