"""The storage port: everything the core keeps, as typed calls that never show SQL."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from bot.chats.refs import ChatRef, UserRef
from bot.jobs.job import DayStats, Job
from bot.messages.i18n import Lang
from bot.moderation.rules import Refusal, Rule
from bot.quotas.rules import Admission, Limits, QuotaState, UserLimit

# Notification channels of the shared queue's engine (QueueRecords.listen).
JOBS = "sdbot_jobs"  # a job queued or ended, a generation slot freed (no payload)
LANGUAGES = "sdbot_languages"  # a user's /lang choice: "<user key>\t<language or empty>"
CANCELLED = "sdbot_cancelled"  # a job /cancel took while it may be drawn: its id (the process drawing it stops)


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
    # The job, queued and charged to ``day``, if no job has ``a.origin`` and (unless exempt) every limit holds.
    async def admit(self, a: Admission, limits: Limits, day: str, now: float) -> Job | None: ...
    async def by_origin(self, origin: str) -> Job | None: ...
    # The picture admitted with an unfinished job (``Admission.picture``); None once the job ended.
    async def picture(self, job_id: int) -> bytes | None: ...
    async def get(self, job_id: int) -> Job | None: ...
    async def unfinished(self) -> list[Job]: ...  # queued and running, oldest first
    async def unfinished_counts(self) -> dict[str, int]: ...  # status -> jobs, of those two
    # Transitions: None or False when the job was not in the state they start from, or (given ``attempt``, the
    # fence of the shared queue) when it runs as another attempt now.
    async def claim(self, job_id: int) -> Job | None: ...  # queued -> running, one more attempt
    async def delivering(self, job_id: int, attempt: int) -> bool: ...  # its pictures are about to be sent
    async def requeue(self, job_id: int) -> Job | None: ...  # running -> queued (a dead process's job)
    async def finish(
        self, job_id: int, *, delivered: int, charged: int, attempt: int | None = None, service: str | None = None
    ) -> bool: ...  # charged only goes down; ``service``: the pool's member that drew it, kept as its backend
    async def fail(self, job_id: int, code: str, *, refund: bool, attempt: int | None = None) -> Job | None: ...
    # Queued, or running (not yet sending its pictures) with ``running``; refunded.
    async def cancel(self, job_id: int, *, owner: str | None, running: bool = False) -> Job | None: ...
    async def cancel_all(self, owner: str) -> list[Job]: ...  # every queued job of ``owner``, by id
    async def update_route(self, job_id: int, route: dict[str, Any]) -> bool: ...
    async def stats(self, day: str, *, top: int = 5, chat: str | None = None) -> DayStats: ...
    # Retention: finished jobs of quota days before ``day``; deleting takes their images off the counters.
    async def count_finished_before(self, day: str) -> int: ...
    async def delete_finished_before(self, day: str, limit: int) -> int: ...


class ModerationRecords(Protocol):
    """The block list (rules by id, one per kind and pattern) and the prompts it refused."""

    # ``level``: "all" (everywhere) or "strict" (only where moderation is strict). False: the list had it.
    async def add_rule(self, kind: str, pattern: str, added_by: str, level: str = "all") -> tuple[Rule, bool]: ...
    async def remove_rule(self, rule_id: int) -> Rule | None: ...
    async def rules(self) -> list[Rule]: ...  # oldest first
    async def record_refusal(self, user_key: str, chat_key: str, rule: Rule, field: str, day: str) -> None: ...
    async def refusals(self, limit: int) -> list[Refusal]: ...  # newest first
    async def refused_on(self, day: str, chat_key: str | None = None) -> int: ...
    async def prune_refusals_before(self, day: str) -> int: ...


class QueueRecords(Protocol):
    """The queue several processes share (PostgreSQL; see :mod:`bot.jobs.shared`). A job is held under a lease
    that its worker renews; ``attempts`` is the fence: a transition given an older attempt changes nothing."""

    # The next queued job of ``platforms`` in round-robin order, running under ``worker``'s lease, unless
    # ``cap`` generations run already (across processes).
    async def claim_next(self, worker: str, platforms: Sequence[str], cap: int, lease: float) -> Job | None: ...
    async def renew(self, worker: str, held: Mapping[int, int], lease: float) -> set[int]: ...  # {id: attempt}
    # Jobs whose lease ran out: queued again, or (to fail them) held by ``worker`` as one more attempt.
    async def take_expired(
        self, worker: str, platforms: Sequence[str], lease: float, *, max_attempts: int, max_age: float
    ) -> list[Job]: ...
    async def places(self, limit: int | None = None) -> list[tuple[int, int]]: ...  # (job id, place), in order
    async def place(self, job_id: int) -> int | None: ...
    async def unfinished(self, platforms: Sequence[str]) -> int: ...
    # ``callback(payload)`` at each notification on ``channel`` (and "" after a reconnect).
    async def listen(self, channel: str, callback: Callable[[str], None]) -> None: ...
    async def refresh(self) -> bool: ...  # reconnect if needed; whether this process leads
    async def try_lock(self, name: str) -> bool: ...  # ``name`` is this process's alone (until it exits)
    async def release(self, worker: str) -> None: ...  # ``worker`` stops: its leases end now
    # A slot under a limit all processes share (``rate`` a second, ``burst`` at once): seconds to wait for it.
    async def pace(self, key: str, rate: float, burst: float) -> float: ...


class QuotaRecords(Protocol):
    async def state(self, user_key: str, chat_key: str, limits: Limits, day: str, now: float) -> QuotaState: ...
    # Seconds until fewer than ``rate`` of the user's requests are left in the rate window.
    async def rate_wait(self, user_key: str, rate: int, now: float) -> float: ...
    async def set_user_limits(self, user_key: str, values: Mapping[UserLimit, int | None]) -> None: ...  # all or none
    async def set_banned(self, user_key: str, banned: bool) -> None: ...
    async def set_chat_limit(self, chat_key: str, value: int | None) -> None: ...
    async def reset_usage(self, scope: Literal["user", "chat"], key: str, day: str) -> int: ...  # images forgiven


class PeopleRecords(Protocol):
    async def touch_user(self, user: UserRef) -> None: ...  # name and platform language as last seen
    async def touch_chat(self, chat: ChatRef) -> None: ...
    async def set_language(self, user: UserRef, lang: Lang | None) -> None: ...  # None: follow the platform
    async def language_choices(self) -> dict[str, str]: ...
    async def display_names(self, keys: list[str]) -> dict[str, str]: ...


class ChannelRecords(Protocol):
    # The channels of a chat (a Discord server) where /draw may be used, in the order allowed; none: all.
    async def allowed(self, chat_key: str) -> list[str]: ...
    async def allow(self, chat_key: str, channel_id: str) -> None: ...
    async def remove(self, chat_key: str, channel_id: str) -> None: ...
    async def clear(self, chat_key: str) -> None: ...
    # The chat's defaults for /draw (option name -> value as typed), set by its admins with /settings.
    async def defaults(self, chat_key: str) -> dict[str, str]: ...
    async def set_default(self, chat_key: str, name: str, value: str | None, by: str) -> None: ...  # None: unset


class InboxRecords(Protocol):
    # False: known. ``worker`` holds the event until ``until`` (renewed), while it handles it.
    async def receive(
        self, platform: str, event_id: int, payload: str, now: float, *, worker: str | None = None,
        until: float | None = None,
    ) -> bool: ...  # fmt: skip
    async def renew(self, worker: str, until: float) -> None: ...  # the unhandled events ``worker`` holds
    async def done(self, platform: str, event_id: int, now: float) -> None: ...
    async def forget_handled_before(self, when: float) -> None: ...
    # Drops events received before ``since`` or handed back ``max_attempts`` times (returns the unhandled ones
    # dropped), then hands back the rest not yet handled and held by nobody now, each counted as one more
    # attempt and held by ``worker`` until ``until``.
    async def take_over(
        self, platform: str, *, now: float, since: float, max_attempts: int, worker: str | None = None,
        until: float | None = None,
    ) -> tuple[list[int], list[HeldEvent]]: ...  # fmt: skip
    async def unhandled(self, platform: str) -> int: ...


class Storage(Protocol):
    """One open database: :func:`bot.storage.open_storage` opens it, :meth:`close` at exit."""

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
    @property
    def moderation(self) -> ModerationRecords: ...
    @property
    def queue(self) -> QueueRecords | None:
        """The shared queue, on an engine several processes share; None: the queue is the process's own."""

    async def hold(self) -> None:
        """Without a shared :attr:`queue`: become the one process running this database's jobs until
        :meth:`close` (``db_in_use`` otherwise)."""

    async def check(self, *, at_once_up_to: int | None = None) -> None:
        """Raise ``db_unavailable`` when the database is damaged; past ``at_once_up_to`` bytes, check it after."""

    async def ping(self) -> None:
        """Raise :class:`StorageError` unless the database answers a trivial query now (health checks)."""

    async def close(self) -> None: ...
