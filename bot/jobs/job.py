"""Job records: one accepted /draw request, from admission to delivery, in the ``jobs`` table."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from bot.chats.refs import ChatRef
from bot.draw.request import DrawRequest
from bot.messages.i18n import Lang

JobStatus = Literal["queued", "running", "done", "failed", "cancelled"]
UNFINISHED: tuple[JobStatus, ...] = ("queued", "running")

# A job found unfinished at start this many times already (it was running each time the process died) is
# failed instead of re-run, so one poisonous request cannot crash the bot forever.
MAX_ATTEMPTS = 3
# Ids come from people too (/cancel 12, a button's data): beyond a 64-bit integer none can exist, and a
# database driver would raise OverflowError rather than find nothing.
MAX_ID = 2**63 - 1


def possible_id(job_id: int) -> bool:
    return 0 < job_id <= MAX_ID


@dataclass(frozen=True, slots=True)
class Job:
    id: int
    user: str  # "telegram:123"
    platform: str
    chat: str  # "telegram:-100123"; on Discord the guild for server channels
    group_chat: bool
    backend: str
    request: DrawRequest  # as the user asked (seed None = random)
    route: dict[str, Any]
    lang: Lang  # the language of this job's messages, fixed at admission
    status: JobStatus
    images: int  # requested
    charged: int  # counted against quotas now; 0 after a refund
    quota_day: str
    seed: int  # the seed this job draws with (the user's, or drawn at admission)
    delivered: int
    error: str | None
    attempts: int
    parent_id: int | None  # the job this one re-runs ("again")
    created_at: float
    started_at: float | None
    finished_at: float | None
    origin: str | None = None  # the platform event that asked for it (see bot.quotas.rules: one job per event)
    delivering_at: float | None = None  # when this attempt began sending its pictures (None: not yet)

    @property
    def user_id(self) -> str:
        return self.user.split(":", 1)[1]

    @property
    def chat_ref(self) -> ChatRef:
        """Where it was asked, as adapters describe it (its re-runs are asked there too)."""
        return ChatRef(self.platform, self.chat.split(":", 1)[1], self.group_chat)

    @property
    def seeded_request(self) -> DrawRequest:
        """The request exactly as it is generated: with this job's seed."""
        return self.request.with_seed(self.seed)


@dataclass(frozen=True, slots=True)
class DayStats:
    """``/admin stats`` and ``sdbot stats``: one quota day."""

    day: str
    jobs: dict[str, int]  # status -> count
    images_delivered: int
    images_charged: int
    failures: list[tuple[str, int]]  # error code -> count, most frequent first
    busiest: list[tuple[str, int]]  # user key -> images charged, most first
    services: list[tuple[str, int, int]] = field(default_factory=list)  # backend -> jobs, images done


@dataclass(frozen=True, slots=True)
class JobEvent:
    """A change worth showing while a job waits or runs.

    ``state="queued"``: ``position`` is its place in the queue (1 = starts at the next free slot).
    ``state="running"``: ``progress`` is 0..1 from backends that report it, else None ("drawing...").
    """

    state: Literal["queued", "running"]
    position: int | None = None
    progress: float | None = None
