"""One status message per job, edited as the job moves, at most one edit per chat per ``interval``.

Telegram answers bursts of edits in one chat with 429 floods (roughly one message per second per chat, twenty
per minute in groups). The first news of a job creates its status reply at once; later texts only mark the
status dirty, and one task per chat edits the dirty statuses one at a time, ``interval`` apart, each with its
latest text. So a job moving through ten queue positions in a second costs one edit, and delivery never waits
for a status edit. Across all chats, edits are also held to ``edits_per_second``: Telegram's overall limit
(about 30 messages a second) is shared with the pictures themselves, and a hundred queued users' positions
must not crowd out the deliveries they are waiting for.

A status message outlives the process that sent it: the sink stores its id in the job's route
(``STATUS_KEY``), and a job recovered after a restart is :meth:`StatusBoard.adopt` ed, so its news edits the
message the user already has instead of leaving it stale and sending another.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from adapters.telegram.sender import Sender
from bot.jobs import Job

log = logging.getLogger(__name__)

_MAX_CHATS = 10_000
STATUS_KEY = "status_id"  # in a job's route: the message id of its status reply


@dataclass(slots=True)
class _Status:
    job_id: int
    owner: str
    chat_id: int
    message_id: int
    shown: str
    wanted: str
    final: bool = False  # the last text it will get; forgotten once shown
    delete: bool = False  # remove the message instead (failed or cancelled: the answer is elsewhere)
    adopted: bool = False  # sent by an earlier process (its text unknown)


class StatusBoard:
    def __init__(
        self,
        sender: Sender,
        interval: float,
        *,
        edits_per_second: float = 10.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._sender = sender
        self._interval = interval
        self._edit_spacing = 1.0 / edits_per_second
        self._next_global = 0.0
        self._clock = clock or (lambda: asyncio.get_running_loop().time())
        self._statuses: dict[int, _Status] = {}
        self._dirty: dict[int, dict[int, None]] = {}  # chat -> job ids waiting for an edit, oldest first
        self._next_edit: dict[int, float] = {}  # chat -> when it may be edited again
        self._lanes: dict[int, asyncio.Task[None]] = {}
        self._abandoned: set[int] = set()  # adopted messages found gone: jobs that need a new status message
        self.edits = 0  # for tests and the benchmark

    def __contains__(self, job_id: int) -> bool:
        return job_id in self._statuses

    def jobs_of(self, owner: str) -> list[int]:
        return [s.job_id for s in self._statuses.values() if s.owner == owner and not s.final]

    def adopt(self, job: Job) -> None:
        """Take over the status message an earlier process sent for ``job`` (its route says which), unless this
        board already shows the job."""
        message_id = job.route.get(STATUS_KEY)
        if job.id in self._statuses or job.id in self._abandoned or not isinstance(message_id, int):
            return
        chat_id = int(job.route["chat_id"])
        self._statuses[job.id] = _Status(job.id, job.user, chat_id, message_id, shown="", wanted="", adopted=True)

    async def show(self, job: Job, text: str, *, reply_to: int | None, thread_id: int | None) -> int | None:
        """The job's status is now ``text``: create its message or schedule an edit. Returns the id of the
        message when this created one (for the sink to remember in the job's route)."""
        self.adopt(job)
        status = self._statuses.get(job.id)
        if status is not None:
            if not status.final:
                status.wanted = text
                self._mark(status)
            return None
        chat_id = int(job.route["chat_id"])
        message = await self._sender.send_text(chat_id, text, reply_to=reply_to, thread_id=thread_id)
        self._statuses[job.id] = _Status(job.id, job.user, message.chat_id, message.message_id, text, text)
        now = self._clock()
        if len(self._next_edit) > _MAX_CHATS:  # forget chats whose pause is long over
            self._next_edit = {chat: when for chat, when in self._next_edit.items() if when > now}
        self._next_edit[message.chat_id] = now + self._interval
        return message.message_id

    def finish(self, job_id: int, text: str | None) -> None:
        """The job ended: show ``text`` as its last status, or delete the status message when None."""
        status = self._statuses.get(job_id)
        if status is None:
            return
        status.final = True
        if text is None:
            status.delete = True
        else:
            status.wanted = text
        self._mark(status)

    async def close(self) -> None:
        """Stop editing; final texts still waiting are shown now, whatever the throttle says (shutdown)."""
        lanes = list(self._lanes.values())
        for lane in lanes:
            lane.cancel()
        await asyncio.gather(*lanes, return_exceptions=True)
        for status in [s for s in self._statuses.values() if s.final]:
            await self._apply(status)
        self._statuses.clear()
        self._dirty.clear()

    def _mark(self, status: _Status) -> None:
        self._dirty.setdefault(status.chat_id, {})[status.job_id] = None
        if status.chat_id not in self._lanes:
            lane = asyncio.get_running_loop().create_task(self._lane(status.chat_id), name=f"status-{status.chat_id}")
            self._lanes[status.chat_id] = lane

    async def _lane(self, chat_id: int) -> None:
        try:
            while dirty := self._dirty.get(chat_id):
                wait = self._next_edit.get(chat_id, 0.0) - self._clock()
                if wait > 0:
                    await asyncio.sleep(wait)
                job_id = next(iter(dirty))
                del dirty[job_id]
                status = self._statuses.get(job_id)
                if status is None:
                    continue
                if status.delete or status.wanted != status.shown:
                    await self._global_turn()
                if await self._apply(status):
                    self._next_edit[chat_id] = self._clock() + self._interval
        finally:
            self._lanes.pop(chat_id, None)
            if not self._dirty.get(chat_id):
                self._dirty.pop(chat_id, None)

    async def _global_turn(self) -> None:
        """Wait for this edit's slot in the overall pace (slots are handed out in order of asking)."""
        now = self._clock()
        slot = max(now, self._next_global)
        self._next_global = slot + self._edit_spacing
        if slot > now:
            await asyncio.sleep(slot - now)

    async def _apply(self, status: _Status) -> bool:
        """Bring the message up to date; True when a request was made (it counts against the chat's pace)."""
        try:
            if status.delete:
                self._statuses.pop(status.job_id, None)
                await self._sender.delete(status.chat_id, status.message_id)
                return True
            if status.wanted == status.shown:
                if status.final:
                    self._statuses.pop(status.job_id, None)
                return False
            text = status.wanted
            self.edits += 1
            if not await self._sender.edit_text(status.chat_id, status.message_id, text):
                self._statuses.pop(status.job_id, None)  # deleted by someone: stop editing it
                if status.adopted:
                    self._abandoned.add(status.job_id)  # the job's next news gets a new message
                return True
            status.shown = text
            if status.final:
                self._statuses.pop(status.job_id, None)
            return True
        except Exception as exc:  # a status is cosmetic: never let it take the lane down
            log.warning("job %s: status update failed: %s", status.job_id, type(exc).__name__)
            if status.final:
                self._statuses.pop(status.job_id, None)
            return True
