"""The fake chat platform of an end-to-end benchmark, in a process of its own (or on the benchmark's loop).

In production Telegram's and Discord's servers are not on the bot's event loop, nor on its CPU. With the fake
on the same loop, every request costs the loop twice (the client's side and the server's), the floors pay the
fake's share too, and the loop-lag ticker measures the fake as much as the bot. So the end-to-end benchmarks
run the fake in a child process (:class:`Host`, ``python -m bench.remote <kind>``), which keeps the bot's loop
and its measurements the bot's own; ``--same-loop`` keeps the old arrangement for comparison (:class:`Local`).

Either way a benchmark gets a :class:`Platform` per run: a fresh fake (addresses, token) and :meth:`~Platform.
burst`, which has every user send ``/draw`` at once and waits until each has its picture. The burst runs where
the fake runs and times everything on the fake's clock: from a user's command to the fake receiving their
picture, as a user would see it.

The child talks JSON lines on its stdin/stdout. It is bounded: it exits when its stdin closes (the parent
ended, whatever way), and the parent kills it if it does not stop within seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fakes.discord import FakeDiscord, FakeMessage, _Upload, patch_discord
from tests.fakes.telegram import JSON, Call, FakeTelegram

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("telegram", "discord")
DISCORD_TOKEN = "discord-test-token-0123456789"  # tests.discord_support.TOKEN, without importing discord.py here
BURST_TIMEOUT = 120.0  # seconds for every picture of one burst to arrive: far above any healthy run
START_TIMEOUT = 30.0  # seconds for the child to import and answer


@dataclass(frozen=True, slots=True)
class Burst:
    seconds: float  # from the first command to the last picture
    latencies: list[float]  # per user, command -> picture
    calls: int  # API requests the fake answered during the burst
    busy: float  # the fake's CPU time over the burst's wall time: near 1.0, the fake was the bottleneck


@dataclass
class Result:
    """One configuration's burst as the end-to-end benchmarks report it."""

    name: str
    commands: int  # users, one /draw each
    seconds: float
    latencies: list[float]
    calls: int  # API requests the fake answered during the burst
    fake_busy: float = 0.0  # the fake's CPU time / the burst's time (near 1: the fake was the bottleneck)
    cpu: float = 0.0  # seconds of this process's CPU time (all threads) during the burst

    @classmethod
    def of(cls, name: str, burst: Burst, cpu: float) -> Result:
        return cls(name, len(burst.latencies), burst.seconds, burst.latencies, burst.calls, burst.busy, cpu)

    @property
    def per_second(self) -> float:
        return self.commands / self.seconds

    def percentile(self, p: int) -> float:
        if len(self.latencies) == 1:
            return self.latencies[0]
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[p - 1]


# The fakes, noting when each user's picture arrived ----------------------------------------------------------


class TimedTelegram(FakeTelegram):
    def __init__(self) -> None:
        super().__init__()
        self.photo_at: dict[int, float] = {}
        self.expected = 0
        self.all_delivered = asyncio.Event()

    async def _api_sendPhoto(self, call: Call) -> JSON:
        result: JSON = await super()._api_sendPhoto(call)  # type: ignore[misc]
        self.photo_at[int(call.params["chat_id"])] = asyncio.get_running_loop().time()
        if len(self.photo_at) >= self.expected:
            self.all_delivered.set()
        return result

    async def burst(self, users: list[int], text: str) -> Burst:
        """Once the client polls (its deleteWebhook came first), every user sends ``text``. Users must be new
        to this fake (each burst waits for its own users' photos)."""
        if not self.calls_to("getUpdates"):
            await self.wait_for("deleteWebhook", timeout=START_TIMEOUT)
        self.photo_at.clear()
        self.all_delivered.clear()
        self.expected = len(users)

        async def send() -> dict[int, float]:
            sent: dict[int, float] = {}
            for user in users:
                sent[user] = asyncio.get_running_loop().time()
                self.send_text(user, text)
            return sent

        return await _timed(self.calls, send, self.photo_at, self.all_delivered)


class TimedDiscord(FakeDiscord):
    def __init__(self) -> None:
        # Discord's 3 s to acknowledge an interaction is enforced by the tests' fakes; here a client that a stall
        # of the machine held past it would lose the whole burst (every callback 404) and the benchmark would
        # wait out BURST_TIMEOUT for nothing. A late answer is measured as late instead.
        super().__init__(DISCORD_TOKEN, ack_deadline=BURST_TIMEOUT)
        self.done_at: dict[int, float] = {}
        self.expected = 0
        self.all_done = asyncio.Event()

    def _edit_message(self, message: FakeMessage, data: JSON, uploads: dict[str, _Upload]) -> None:
        super()._edit_message(message, data, uploads)
        if message.attachments and message.interaction_id is not None and message.interaction_id not in self.done_at:
            self.done_at[message.interaction_id] = asyncio.get_running_loop().time()
            if len(self.done_at) >= self.expected:
                self.all_done.set()

    async def burst(self, users: list[int], command: str, options: JSON) -> Burst:
        """Every user invokes ``command`` at once (the client is connected and has registered it)."""
        self.done_at.clear()
        self.all_done.clear()
        self.expected = len(users)

        async def send() -> dict[int, float]:
            sent: dict[int, float] = {}
            for user in users:
                at = asyncio.get_running_loop().time()
                record = await self.invoke_command(command, options, user_id=user)
                sent[record.id] = at
            return sent

        return await _timed(self.calls, send, self.done_at, self.all_done)


async def _timed(
    calls: list[Any],
    send: Callable[[], Awaitable[dict[Any, float]]],
    done_at: dict[Any, float],
    all_done: asyncio.Event,
) -> Burst:
    """Run ``send`` (which returns when each command was sent, by key) and wait until ``done_at`` has every
    key's answer (``all_done``): the burst as seen from the fake's side."""
    before, cpu = len(calls), time.process_time()
    loop = asyncio.get_running_loop()
    begin = loop.time()
    sent = await send()
    await asyncio.wait_for(all_done.wait(), BURST_TIMEOUT)
    end = max(done_at.values())
    busy = (time.process_time() - cpu) / max(loop.time() - begin, 1e-9)
    return Burst(end - begin, [done_at[key] - sent[key] for key in sent], len(calls) - before, busy)


def _new_fake(kind: str) -> TimedTelegram | TimedDiscord:
    if kind == "telegram":
        return TimedTelegram()
    if kind == "discord":
        return TimedDiscord()
    raise ValueError(f"unknown platform {kind!r}; one of {KINDS}")


def _describe(fake: TimedTelegram | TimedDiscord) -> JSON:
    info: JSON = {"url": fake.url, "port": fake.port, "token": fake.token}
    if isinstance(fake, TimedDiscord):
        info |= {"api_base": fake.api_base, "gateway_url": fake.gateway_url, "application_id": fake.application_id}
    return info


async def _burst(fake: TimedTelegram | TimedDiscord, spec: JSON) -> Burst:
    if isinstance(fake, TimedTelegram):
        return await fake.burst(spec["users"], spec["text"])
    return await fake.burst(spec["users"], spec["command"], spec["options"])


# What a benchmark sees ----------------------------------------------------------------------------------------


class Platform:
    """One fresh fake for one run: where it listens, and :meth:`burst`."""

    def __init__(self, info: JSON, burst: Any, *, one_at_a_time: bool = False) -> None:
        self.url: str = info["url"]
        self.port: int = info["port"]
        self.token: str = info["token"]
        self.api_base: str = info.get("api_base", "")
        self.gateway_url: str = info.get("gateway_url", "")
        self.application_id: int = info.get("application_id", 0)
        self._info = info
        self._burst = burst
        self._one_at_a_time = one_at_a_time

    def one_at_a_time(self) -> Platform:
        """The same fake, whose :meth:`burst` sends each user's command once the previous user's picture
        arrived: the latency of one command with nothing else in flight (what a user of a quiet bot waits)."""
        return Platform(self._info, self._burst, one_at_a_time=True)

    async def burst(self, users: list[int], **spec: Any) -> Burst:
        """Telegram: ``text``; Discord: ``command`` and ``options``. Returns once every user has a picture."""
        if not self._one_at_a_time:
            return await self._burst({"users": users, **spec})  # type: ignore[no-any-return]
        seconds, calls, busy = 0.0, 0, 0.0
        latencies: list[float] = []
        for user in users:
            one: Burst = await self._burst({"users": [user], **spec})
            seconds += one.seconds
            latencies += one.latencies
            calls += one.calls
            busy += one.busy * one.seconds
        return Burst(seconds, latencies, calls, busy / max(seconds, 1e-9))

    def patch_discord(self) -> contextlib.AbstractContextManager[None]:
        """Point discord.py at this fake, as :meth:`FakeDiscord.patch_discord` does for an in-process one."""
        return patch_discord(self.api_base, self.gateway_url)


class Fakes(Protocol):
    kind: str
    where: str  # for reports: "own process" or "same loop"

    def fake(self) -> contextlib.AbstractAsyncContextManager[Platform]: ...


class Local:
    """Fakes on the running loop (the arrangement before the child process, kept for comparison)."""

    where = "same loop"

    def __init__(self, kind: str) -> None:
        self.kind = kind

    async def __aenter__(self) -> Local:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    @contextlib.asynccontextmanager
    async def fake(self) -> AsyncIterator[Platform]:
        fake = _new_fake(self.kind)
        await fake.start()
        try:
            yield Platform(_describe(fake), lambda spec: _burst(fake, spec))
        finally:
            await fake.stop()


class Host:
    """A child process serving fresh fakes, one at a time (``async with Host("discord") as host``)."""

    where = "own process"

    def __init__(self, kind: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown platform {kind!r}; one of {KINDS}")
        self.kind = kind
        self._proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Host:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.remote",
            self.kind,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=ROOT,
            limit=1 << 20,
        )
        try:
            await self._ask({"op": "hello"}, START_TIMEOUT)
        except BaseException:
            await self._end(graceful=False)
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # After an error the child may be in the middle of a burst, not reading: no point waiting for it.
        await self._end(graceful=exc is None)

    @contextlib.asynccontextmanager
    async def fake(self) -> AsyncIterator[Platform]:
        info = await self._ask({"op": "open"}, START_TIMEOUT)
        yield Platform(info, self._remote_burst)
        # Not after an error: the child may still be in the burst, not reading; leaving the Host kills it.
        await self._ask({"op": "close"}, START_TIMEOUT)

    async def _remote_burst(self, spec: JSON) -> Burst:
        answer = await self._ask({"op": "burst", **spec}, BURST_TIMEOUT + START_TIMEOUT)
        return Burst(**answer)

    async def _ask(self, message: JSON, seconds: float) -> JSON:
        proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps(message).encode() + b"\n")
        await proc.stdin.drain()
        line = await asyncio.wait_for(proc.stdout.readline(), seconds)
        if not line:
            raise RuntimeError(f"the fake {self.kind} process ended (exit code {await proc.wait()})")
        answer: JSON = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"the fake {self.kind} process: {answer['error']}")
        return answer

    async def _end(self, *, graceful: bool) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if graceful and proc.returncode is None and proc.stdin is not None:
                proc.stdin.close()  # the child's cue to stop its fake and exit
                await asyncio.wait_for(proc.wait(), 10)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


# The child process ----------------------------------------------------------------------------------------


def _exit_when_orphaned(parent: int) -> None:
    """Exit once the parent is gone (killed mid-burst, when nobody reads the pipe's end-of-file): checked
    every second."""
    if os.getppid() != parent:
        os._exit(1)
    asyncio.get_running_loop().call_later(1.0, _exit_when_orphaned, parent)


async def serve(kind: str, out: Any) -> None:
    """Answer the parent's requests (one JSON object a line) until its end of the pipe closes."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    _exit_when_orphaned(os.getppid())
    fake: TimedTelegram | TimedDiscord | None = None
    try:
        while line := await reader.readline():
            request = json.loads(line)
            op = request.pop("op")
            try:
                answer: JSON = {}
                if op == "open":
                    if fake is not None:
                        await fake.stop()
                    fake = _new_fake(kind)
                    await fake.start()
                    answer = _describe(fake)
                elif op == "close" and fake is not None:
                    await fake.stop()
                    fake = None
                elif op == "burst":
                    if fake is None:
                        raise RuntimeError("no fake open")
                    burst = await _burst(fake, request)
                    answer = dataclasses.asdict(burst)
            except Exception as exc:
                answer = {"error": f"{type(exc).__name__}: {exc}"}
            out.write(json.dumps(answer) + "\n")
            out.flush()
    finally:
        if fake is not None:
            await fake.stop()


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in KINDS:
        print(f"usage: python -m bench.remote {{{','.join(KINDS)}}}  (started by the benchmarks)", file=sys.stderr)
        return 2
    # The answers get stdout to themselves: anything else printing goes to stderr.
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    logging.disable(logging.WARNING)  # the fakes' notices are noise here
    asyncio.run(serve(argv[0], out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
