"""The storage port: everything the core keeps in a database, as typed calls that never show SQL.

Like httpx's transports, the core depends only on these protocols and an engine implements them beside the
others (:mod:`bot.storage.sqlite` today). Each write is atomic on its own: a decision such as "admit this job
if the user has images left" is made and recorded in one step, so processes sharing a database cannot
overspend. The contract every engine keeps is pinned by the tests taking the ``store`` fixture.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from bot.chats.refs import ChatRef, UserRef
from bot.jobs.job import DayStats, Job
from bot.messages.i18n import Lang
from bot.quotas.rules import Admission, Limits, QuotaState, UserLimit


class StorageError(Exception):
    """The database failed (damaged, locked past its timeout, the disk full...), whatever the engine: callers
    handle one exception, and the engine's own is its ``__cause__``."""


@dataclass(frozen=True, slots=True)
class HeldEvent:
    """A platform event received and not yet handled (see :mod:`bot.chats.inbox`)."""

    event_id: int
    payload: str  # JSON, as given to receive()
    received_at: float


class JobRecords(Protocol):
    """Jobs and their transitions. Each transition is conditional on the job's state: of two concurrent ones
    exactly one wins, so a job is refunded, reported or delivered once."""

    async def admit(self, a: Admission, limits: Limits, day: str, now: float) -> Job | None:
        """Insert ``a`` as a queued job with its images charged to ``day``, if no job has ``a.origin`` and
        (unless ``a.exempt``) every limit holds at ``now``; else None."""

    async def by_origin(self, origin: str) -> Job | None: ...

    async def get(self, job_id: int) -> Job | None: ...

    async def unfinished(self) -> list[Job]:
        """Queued and running jobs, oldest first."""

    async def claim(self, job_id: int) -> Job | None:
        """queued -> running (one more attempt); None when it is not queued."""

    async def delivering(self, job_id: int) -> None:
        """Record that a running job's pictures are about to be sent."""

    async def requeue(self, job_id: int) -> Job | None:
        """running -> queued, for a job a dead process left running."""

    async def finish(self, job_id: int, *, delivered: int, charged: int) -> bool:
        """running -> done; ``charged`` may only go down. False when it was not running."""

    async def fail(self, job_id: int, code: str, *, refund: bool) -> Job | None:
        """queued/running -> failed; None when it had already ended."""

    async def cancel(self, job_id: int, *, owner: str | None) -> Job | None:
        """queued -> cancelled and refunded; ``owner`` restricts it to that user's job."""

    async def cancel_all(self, owner: str) -> list[Job]:
        """Cancel and refund every queued job of ``owner``, by id."""

    async def update_route(self, job_id: int, route: dict[str, Any]) -> bool: ...

    async def stats(self, day: str, *, top: int = 5, chat: str | None = None) -> DayStats: ...

    async def count_finished_before(self, day: str) -> int:
        """Finished jobs of quota days before ``day`` (what retention deletes)."""

    async def delete_finished_before(self, day: str, limit: int) -> int:
        """Delete up to ``limit`` of them, taking their images off the usage counters; returns how many."""


class QuotaRecords(Protocol):
    """Usage and the limits admins set."""

    async def state(self, user_key: str, chat_key: str, limits: Limits, day: str, now: float) -> QuotaState: ...

    async def rate_wait(self, user_key: str, rate: int, now: float) -> float:
        """Seconds until fewer than ``rate`` of the user's requests remain in the rate window."""

    async def set_user_limits(self, user_key: str, values: Mapping[UserLimit, int | None]) -> None:
        """All of them change, or none. None: back to the configured default."""

    async def set_banned(self, user_key: str, banned: bool) -> None: ...

    async def set_chat_limit(self, chat_key: str, value: int | None) -> None: ...

    async def reset_usage(self, scope: Literal["user", "chat"], key: str, day: str) -> int:
        """Forgive what ``key`` used on ``day``; returns how many images."""


class PeopleRecords(Protocol):
    """Users and chats as last seen, and each user's /lang choice."""

    async def touch_user(self, user: UserRef) -> None: ...

    async def touch_chat(self, chat: ChatRef) -> None: ...

    async def set_language(self, user: UserRef, lang: Lang | None) -> None: ...

    async def language_choices(self) -> dict[str, str]: ...

    async def display_names(self, keys: list[str]) -> dict[str, str]: ...


class ChannelRecords(Protocol):
    """The channels of a chat (a Discord server) where /draw may be used; none means every channel."""

    async def allowed(self, chat_key: str) -> list[str]:
        """In the order they were allowed."""

    async def allow(self, chat_key: str, channel_id: str) -> None: ...

    async def remove(self, chat_key: str, channel_id: str) -> None: ...

    async def clear(self, chat_key: str) -> None: ...


class InboxRecords(Protocol):
    """Platform events kept from their arrival until handled (see :mod:`bot.chats.inbox`)."""

    async def receive(self, platform: str, event_id: int, payload: str, now: float) -> bool:
        """False when the event is known already."""

    async def done(self, platform: str, event_id: int, now: float) -> None: ...

    async def forget_handled_before(self, when: float) -> None: ...

    async def take_over(self, platform: str, *, since: float, max_attempts: int) -> tuple[list[int], list[HeldEvent]]:
        """Drop events received before ``since`` or handed back ``max_attempts`` times (returns the unhandled
        ones dropped), then hand back the rest not yet handled, each counted as one more attempt."""

    async def unhandled(self, platform: str) -> int: ...


class Storage(Protocol):
    """One open database. :func:`bot.storage.open_storage` opens one; :meth:`close` at exit."""

    @property
    def jobs(self) -> JobRecords: ...

    @property
    def quotas(self) -> QuotaRecords: ...

    @property
    def people(self) -> PeopleRecords: ...

    @property
    def channels(self) -> ChannelRecords: ...

    @property
    def inbox(self) -> InboxRecords: ...

    async def check(self) -> None:
        """Raise ``db_unavailable`` when the database is damaged."""

    async def close(self) -> None: ...
