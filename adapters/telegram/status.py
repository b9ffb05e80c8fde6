"""One status message per job, edited as the job moves: the Telegram sink's one throttle for progress."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from adapters.lanes import Lanes
from adapters.telegram.sender import Sender
from bot.jobs.job import Job

log = logging.getLogger(__name__)

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
    ) -> None:
        self._sender = sender
        self._statuses: dict[int, _Status] = {}
        self._lanes = Lanes[int](self._due, self._apply_job, interval, overall=edits_per_second)
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
        await self._lanes.spend(message.chat_id)
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
        await self._lanes.close()
        for status in [s for s in self._statuses.values() if s.final]:
            await self._apply(status)
        self._statuses.clear()

    def _mark(self, status: _Status) -> None:
        self._lanes.mark(status.chat_id, status.job_id)

    def _due(self, job_id: int) -> bool:
        status = self._statuses.get(job_id)
        return status is not None and (status.delete or status.wanted != status.shown)

    async def _apply_job(self, job_id: int) -> None:
        status = self._statuses.get(job_id)
        if status is not None:
            await self._apply(status)

    async def _apply(self, status: _Status) -> bool:
        """Bring the message up to date; True when a request was made."""
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
