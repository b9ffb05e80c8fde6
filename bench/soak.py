"""The soak: thousands of ``/draw`` commands through the real bot process, with faults, an outage and crashes.

    python -m bench.soak [--full] [--seed N] [--workdir DIR] [--json]
    python -m bench soak [--full]

**What runs.** ``sdbot run`` as a real subprocess (``python -m bench.soak_bot``: the shipped CLI, with discord.py
pointed at the fake Discord because its address is not configurable), serving Telegram and Discord around one
core, generating with the real Qianfan backend over HTTP. The three services are the project's fakes, in this
process, on 127.0.0.1: :class:`SoakTelegram` (long polling), :class:`SoakDiscord` (REST + gateway) and
:class:`SoakQianfan`, which answers a share of the generations with a fault drawn at random from every class the
backend maps (see :data:`FAULTS`). The bot logs at DEBUG to one file across all its lives.

**Load.** A seeded schedule spreads the commands over ``send_seconds``: ``/draw`` with random options (and some
invalid ones), ``/quota`` and ``/cancel`` on Telegram from ``telegram_users`` private chats, slash ``/draw`` on
Discord from ``discord_users`` in a server channel or a DM. A few users send most commands, so the per-minute and
pending limits refuse some (refused = told, nothing charged). Meanwhile, at seeded moments: Telegram answers some
sends with 429 (the bot waits them out), Discord answers some webhook calls with 429, the image API is down for
``outage_seconds`` (connections refused and cut; the circuit breaker marks it down, refuses at once, and
recovers by itself), and the bot is stopped: once with SIGTERM (a deploy) and ``kills`` times with SIGKILL,
each time restarted at once, as a supervisor would.

**Checks** (every violation is a line of :attr:`SoakReport.problems`; the CLI exits 1 when there is one):

* every ``/draw`` the bot accepted (a job row; its status reply or deferred answer) ended with exactly one
  delivery (photo, album, attachments: counted by the ``sdbot-<job>`` file names) or exactly one failure
  message, and is refunded when it failed; every refused one got a refusal reply; ``/quota`` and ``/cancel``
  were answered;
* ``usage_matches_jobs`` is empty; each day's usage is the images of the done jobs; failed and cancelled jobs
  charge nothing; no job is left queued or running;
* no secret (bot tokens, Qianfan keys, every access/refresh token the fake issued, Discord interaction tokens)
  appears anywhere in the bot's log;
* the bot answers SIGTERM with exit code 0, and restarts every time;
* with ``rss_growth_limit`` set (the full run), the bot's RSS, sampled from ``/proc/<pid>/status`` during its
  first life (warm-up excluded), does not grow by more than that from the first quarter to the last.

**Allowed, counted and reported** (``SoakReport.crash_artefacts``), and only where a SIGKILL explains them:

* a job whose life spanned a SIGKILL may be delivered twice, delivered and then told of a failure, or told
  twice: it is re-run with the same seed, so its result comes at least once (the process died between
  sending the result and recording it);
* a Discord command nobody answered because the interaction was dispatched to a life that ended in SIGKILL:
  Discord does not send an interaction again, and itself tells the user the application did not respond.
  (Accepted jobs are never among them: a job row outlives any process.)

A Telegram command is never allowed to go unanswered, kill or not: each update is kept in the bot's inbox
(``bot/chats/inbox.py``) before Telegram learns it arrived and until its handler is done, so one the killed process
had fetched is handled after the restart, and handling it twice admits its ``/draw`` once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import random
import re
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiohttp import web

from bot.draw import params
from bot.draw.grammar import render_value
from bot.messages.i18n import LANGUAGES, t
from bot.storage.sqlite import SQLiteStorage
from tests.fakes import image_api
from tests.fakes.discord import FakeDiscord, FakeInteraction
from tests.fakes.image_api import Fault
from tests.fakes.qianfan import ERROR_MESSAGES, RATE_LIMIT_CODES, FakeQianfan
from tests.fakes.telegram import Call, FakeTelegram
from tests.pipeline_support import usage_matches_jobs

ROOT = Path(__file__).resolve().parent.parent
BOT_MODULE = "bench.soak_bot"  # what the bot process runs: ``sdbot run`` pointed at the fake Discord
SIZES = ("768x768", "1024x576", "576x1024")  # the smallest of the seed sizes: the soak is about the pipeline
PROMPTS = (
    "a lighthouse at dusk",
    "cat in a space suit",
    "一只在月光下的猫",
    "mountain lake, morning fog",
    "retro robot reading a newspaper",
    "水墨山水",
    "city street in the rain, neon",
    "a bowl of ramen, top view",
)
INVALID_TG = ("/draw cat --n 9", "/draw cat --steps 500", "/draw cat --style Nope", "/draw cat --size 13x13")
INTERACTION_TOKEN_PREFIX = "aW50ZXJhY3Rpb246"  # how every FakeDiscord interaction token starts
_JOB_FILE = re.compile(r"^sdbot-(\d+)(?:-\d+)?\.\w+$")
_DISCORD_FIRST_FILE = re.compile(r"^sdbot-(\d+)-1\.\w+$")


@dataclass(frozen=True)
class SoakConfig:
    name: str
    telegram_commands: int
    telegram_users: int
    discord_commands: int
    discord_users: int
    send_seconds: float  # commands are spread over this long
    outage_at: float  # seconds after the start
    outage_seconds: float
    crash_from: float  # the SIGTERM and the SIGKILLs happen between these two moments
    crash_until: float
    kills: int
    fault_rate: float  # share of generations answered with a random fault
    telegram_429s: int
    discord_429s: int
    drain_timeout: float  # after the last command, for every accepted job to finish
    rss_growth_limit: float | None  # fail when RSS grows more than this (0.2 = 20 %); None: report only
    max_uptime: float = 6.0  # a restarted life is stopped again 2 s to this long after it became ready
    breaker_cooldown: float = 3.0
    concurrency: int = 4
    seed: int = 7


SHORT = SoakConfig(
    name="short",
    telegram_commands=300,
    telegram_users=30,
    discord_commands=100,
    discord_users=10,
    send_seconds=24.0,
    outage_at=5.0,
    outage_seconds=5.0,
    crash_from=8.0,
    crash_until=20.0,
    kills=2,
    fault_rate=0.15,
    telegram_429s=4,
    discord_429s=3,
    drain_timeout=60.0,
    rss_growth_limit=None,
)
FULL = SoakConfig(
    name="full",
    telegram_commands=5000,
    telegram_users=200,
    discord_commands=1000,
    discord_users=60,
    send_seconds=400.0,  # ~26 Telegram calls a second: just under the 30 the bot allows itself (a stable queue)
    outage_at=140.0,
    outage_seconds=30.0,
    crash_from=330.0,
    crash_until=410.0,
    kills=4,
    fault_rate=0.12,
    telegram_429s=25,
    discord_429s=15,
    drain_timeout=300.0,
    rss_growth_limit=0.20,
    max_uptime=15.0,
    breaker_cooldown=5.0,
)


# The fakes ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FaultKind:
    """One way the image API misbehaves, and what the backend makes of it (for the report)."""

    name: str
    outcome: str
    make: Any  # (timeout) -> Fault


def _api_error(code: int) -> Any:
    def make(_timeout: float) -> Fault:
        body = {"error_code": code, "error_msg": ERROR_MESSAGES.get(code, "error")}
        headers = {"X-Ratelimit-Remaining-Requests": "0"} if code in RATE_LIMIT_CODES else {}
        return Fault(image_api.RESPONSE, body=body, headers=headers)

    return make


def _simple(kind: str, **fields: Any) -> Any:
    return lambda _timeout: Fault(kind, **fields)


# Every error class the Qianfan backend maps, plus slow answers on both sides of SDBOT_BACKEND_TIMEOUT.
FAULTS: tuple[FaultKind, ...] = (
    FaultKind("error 336000 internal", "backend_unavailable, retried", _api_error(336000)),
    FaultKind("error 2 unavailable", "backend_unavailable, retried", _api_error(2)),
    FaultKind("error 18 qps", "backend_rate_limited, retried after 1 s", _api_error(18)),
    FaultKind("error 336501 rpm", "backend_rate_limited, 60 s: failed", _api_error(336501)),
    FaultKind("error 17 daily quota", "backend_quota_exhausted", _api_error(17)),
    FaultKind("error 14 iam", "backend_auth_failed", _api_error(14)),
    FaultKind("error 6 permission", "backend_config", _api_error(6)),
    FaultKind("error 336003 argument", "backend_invalid_request (user's)", _api_error(336003)),
    FaultKind("error 336002 json", "backend_invalid_request (ours)", _api_error(336002)),
    FaultKind("error 111 token expired", "new token, retried", _api_error(111)),
    FaultKind("http 502", "backend_unavailable, retried", _simple(image_api.RESPONSE, status=502, body="Bad Gateway")),
    FaultKind("http 429", "backend_rate_limited, retried", _simple(image_api.RESPONSE, status=429, body="Slow down")),
    FaultKind("malformed json", "backend_unavailable", _simple(image_api.MALFORMED_JSON)),
    FaultKind("disconnect", "backend_unavailable, retried", _simple(image_api.DISCONNECT)),
    FaultKind("not an image", "backend_bad_image", _simple(image_api.NOT_IMAGE)),
    FaultKind("bomb", "backend_bad_image", _simple(image_api.BOMB)),
    FaultKind("wrong size", "backend_bad_image", _simple(image_api.WRONG_SIZE)),
    FaultKind("slow", "delivered late", lambda timeout: Fault(image_api.DELAY, seconds=timeout * 0.5)),
    FaultKind("past the timeout", "backend_timeout", lambda timeout: Fault(image_api.DELAY, seconds=timeout + 1.0)),
)


class SoakQianfan(FakeQianfan):
    """FakeQianfan answering ``fault_rate`` of the generations with a random :data:`FAULTS` entry, able to go
    down (connections refused, open ones cut) and come back on the same port, and remembering every secret
    its token endpoint handed out."""

    def __init__(self, rng: random.Random, fault_rate: float, timeout: float, **kwargs: Any) -> None:
        super().__init__(rpm_limit=10**9, **kwargs)  # its RPM window is a fault of its own here, not a limit
        self.plan = rng
        self.fault_rate = fault_rate
        self.timeout = timeout
        self.injected: Counter[str] = Counter()
        self.fault_log: list[tuple[float, str]] = []  # (monotonic, fault) for reading the bot's log against
        self.down = False
        self.refused_while_down = 0
        self.issued_secrets: list[str] = []

        @web.middleware
        async def outage(request: web.Request, handler: Any) -> web.StreamResponse:
            if self.down:  # a connection opened before the outage: cut it, as a dying server would
                self.refused_while_down += 1
                if request.transport is not None:
                    request.transport.abort()
                raise web.HTTPServiceUnavailable()
            return await handler(request)  # type: ignore[no-any-return]

        self.app.middlewares.append(outage)

    def take_fault(self) -> Fault | None:
        planned = super().take_fault()
        if planned is not None or self.plan.random() >= self.fault_rate:
            return planned
        kind = self.plan.choice(FAULTS)
        self.injected[kind.name] += 1
        self.fault_log.append((time.monotonic(), kind.name))
        return kind.make(self.timeout)  # type: ignore[no-any-return]

    def image(self, fault: Fault | None, width: int, height: int, seed: int) -> bytes:
        return super().image(fault, width, height, seed % 8)  # real PNGs, drawn once per size and colour

    async def _token(self, request: web.Request) -> web.StreamResponse:
        response = await super()._token(request)
        if isinstance(response, web.Response) and response.status == 200 and response.body is not None:
            data = json.loads(bytes(response.body))  # type: ignore[arg-type]
            keys = ("access_token", "refresh_token", "session_key", "session_secret")
            self.issued_secrets.extend(str(data[k]) for k in keys if data.get(k))
        return response

    async def go_down(self) -> None:
        self.down = True
        assert self._runner is not None
        for site in list(self._runner.sites):
            await site.stop()  # stops listening: new connections are refused

    async def come_back(self) -> None:
        assert self._runner is not None
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.down = False


class SoakTelegram(FakeTelegram):
    """FakeTelegram telling how many updates the bot has not confirmed yet."""

    @property
    def unconfirmed(self) -> int:
        """Updates not yet confirmed by a later getUpdates (not fetched, or fetched by the last poll)."""
        return len(self._queue)


# The schedule ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Planned:
    at: float
    platform: str  # telegram | discord
    user: int
    kind: str  # draw | quota | cancel
    text: str = ""  # Telegram: the message
    options: dict[str, Any] = field(default_factory=dict)  # Discord: the slash command's options
    language: str = "en"
    dm: bool = False


def _weights(users: int) -> list[float]:
    # A few heavy users send most commands (so the per-minute and pending limits refuse some), many send few.
    return [1.0 / (rank**0.6) for rank in range(1, users + 1)]


def _draw_words(rng: random.Random) -> tuple[str, dict[str, Any]]:
    prompt = rng.choice(PROMPTS)
    options: dict[str, Any] = {"size": rng.choice(SIZES)}
    options["n"] = rng.choices((1, 2, 3, 4), weights=(70, 20, 5, 5))[0]
    if rng.random() < 0.5:
        options["style"] = rng.choice(list(params.STYLES))
    if rng.random() < 0.3:
        options["steps"] = rng.randint(10, 30)
    if rng.random() < 0.1:
        options["seed"] = rng.randint(0, params.SEED_RANGE[1])
    return prompt, options


def schedule(config: SoakConfig) -> list[Planned]:
    rng = random.Random(config.seed)
    plan: list[Planned] = []
    tg_users = [10_001 + i for i in range(config.telegram_users)]
    tg_weights = _weights(len(tg_users))
    for _ in range(config.telegram_commands):
        user = rng.choices(tg_users, weights=tg_weights)[0]
        at = rng.uniform(0, config.send_seconds)
        language = "zh-hans" if user % 5 == 0 else "en"
        roll = rng.random()
        if roll < 0.03:
            plan.append(Planned(at, "telegram", user, "quota", "/quota", language=language))
            continue
        if roll < 0.06:
            plan.append(Planned(at, "telegram", user, "cancel", "/cancel", language=language))
            continue
        if roll < 0.11:
            plan.append(Planned(at, "telegram", user, "draw", rng.choice(INVALID_TG), language=language))
            continue
        prompt, options = _draw_words(rng)
        style = options.get("style")
        words = [f"/draw {prompt}"] + [f"--{key} {render_value(str(value))}" for key, value in options.items()]
        if style is not None and rng.random() < 0.2:
            words.append('--neg "blurry, low quality"')
        plan.append(Planned(at, "telegram", user, "draw", " ".join(words), language=language))
    dc_users = [800_000_000_000_000_001 + i for i in range(config.discord_users)]
    dc_weights = _weights(len(dc_users))
    for _ in range(config.discord_commands):
        user = rng.choices(dc_users, weights=dc_weights)[0]
        at = rng.uniform(0, config.send_seconds)
        prompt, options = _draw_words(rng)
        if rng.random() < 0.05:
            options = {"prompt": "cat --n 9"} if rng.random() < 0.5 else {"prompt": "cat", "steps": 999}
        else:
            options["prompt"] = prompt
        locale = "zh-CN" if user % 4 == 0 else "en-US"
        plan.append(Planned(at, "discord", user, "draw", options=options, language=locale, dm=user % 5 == 0))
    plan.sort(key=lambda p: p.at)
    return plan


# The bot process ------------------------------------------------------------------------------------------


@dataclass
class Life:
    """One run of the bot process."""

    number: int
    pid: int
    started: float  # time.monotonic()
    ready: float | None = None
    ended: float | None = None
    ended_wall: float | None = None  # time.time(), to compare with the bot's own records
    how: str = ""  # "kill", "term" or "" while alive
    exit_code: int | None = None


class BotProcess:
    def __init__(self, env: dict[str, str], cwd: Path, log_path: Path) -> None:
        self.env = env
        self.cwd = cwd
        self.log_path = log_path
        self.lives: list[Life] = []
        self.proc: asyncio.subprocess.Process | None = None
        self.serving = asyncio.Event()  # set while a life is ready (Discord commands wait for it)

    @property
    def current(self) -> Life:
        return self.lives[-1]

    async def start(self, tg: SoakTelegram, dc: SoakDiscord, limit: float = 90.0) -> Life:
        polling_before = len(tg.calls_to("deleteWebhook"))
        synced_before = len(dc.calls_to("PUT", r"/commands$"))
        with self.log_path.open("ab") as log:
            log.write(f"----- soak: bot life {len(self.lives) + 1} -----\n".encode())
            log.flush()
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", BOT_MODULE, cwd=self.cwd, env=self.env,
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
            )  # fmt: skip
        life = Life(len(self.lives) + 1, self.proc.pid, time.monotonic())
        self.lives.append(life)

        def ready() -> bool:
            return (
                len(tg.calls_to("deleteWebhook")) > polling_before
                and len(dc.calls_to("PUT", r"/commands$")) > synced_before
                and dc.is_connected
            )

        try:
            async with asyncio.timeout(limit):
                while not ready():
                    if self.proc.returncode is not None:
                        raise RuntimeError(f"the bot exited with {self.proc.returncode} while starting")
                    await asyncio.sleep(0.05)
        except (RuntimeError, TimeoutError) as exc:
            tail = self.log_path.read_bytes()[-3000:].decode("utf-8", "replace")
            raise RuntimeError(f"bot life {life.number} did not become ready ({exc!r}); its log ends:\n{tail}") from exc
        life.ready = time.monotonic()
        self.serving.set()
        return life

    async def stop(self, how: str, limit: float = 60.0) -> int:
        """``kill`` (SIGKILL) or ``term`` (SIGTERM, then waited for); returns the exit code."""
        assert self.proc is not None
        self.serving.clear()
        life = self.current
        if how == "kill":
            self.proc.kill()
        else:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(self.proc.wait(), limit)
        except TimeoutError:
            self.proc.kill()
            code = await self.proc.wait()
            how = "term-timeout"
        life.ended, life.ended_wall, life.how, life.exit_code = time.monotonic(), time.time(), how, code
        return code

    @property
    def kills(self) -> tuple[float, ...]:
        return tuple(life.ended_wall for life in self.lives if life.how == "kill" and life.ended_wall is not None)

    def life_at(self, moment: float) -> Life | None:
        for life in self.lives:
            if life.started <= moment and (life.ended is None or moment <= life.ended):
                return life
        return None

    def rss_kib(self) -> int | None:
        if self.proc is None or self.proc.returncode is not None:
            return None
        try:
            status = Path(f"/proc/{self.proc.pid}/status").read_text()
        except OSError:
            return None
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        return int(match.group(1)) if match else None


class SoakDiscord(FakeDiscord):
    """FakeDiscord; interactions carry their dispatch time (``created_at``, monotonic) already."""


# Outcomes -------------------------------------------------------------------------------------------------


@dataclass
class JobRow:
    id: int
    platform: str
    status: str
    error: str | None
    images: int
    charged: int
    delivered: int
    attempts: int
    route: dict[str, Any]
    user: str
    day: str
    created_at: float  # wall clock, as the bot records it
    finished_at: float | None
    kills: tuple[float, ...] = ()  # wall-clock moments of the SIGKILLs of the run

    @property
    def crashed(self) -> bool:
        """A SIGKILL fell in its life: it was re-run (same seed) or its result re-sent, at least once."""
        end = self.finished_at if self.finished_at is not None else float("inf")
        return self.attempts >= 2 or self.error == "job_crashed" or any(self.created_at <= k <= end for k in self.kills)


def read_jobs(db: Path, kills: tuple[float, ...] = ()) -> list[JobRow]:
    if not db.exists():
        return []
    conn = sqlite3.connect(db, timeout=10)
    try:
        rows = conn.execute(
            "SELECT id, platform, status, error, images, charged, delivered, attempts, route, user_key, quota_day, "
            "created_at, finished_at FROM jobs ORDER BY id"
        ).fetchall()
    except sqlite3.OperationalError:  # not created yet
        return []
    finally:
        conn.close()
    return [JobRow(*r[:8], json.loads(r[8]), *r[9:], kills=kills) for r in rows]  # type: ignore[misc]


def status_texts(positions: int) -> frozenset[str]:
    """Every text a job's status can show (queue positions, drawing, progress), in every language."""
    texts: set[str] = set()
    for lang in LANGUAGES:
        texts.update(t(lang, "job.queued", position=p) for p in range(1, positions + 1))
        texts.add(t(lang, "job.running"))
        texts.update(t(lang, "job.running_progress", percent=p) for p in range(101))
    return frozenset(texts)


@dataclass
class Sent:
    """A command as the soak sent it."""

    planned: Planned
    at: float  # time.monotonic()
    chat_id: int = 0  # Telegram
    message_id: int = 0
    update_id: int = 0
    interaction: FakeInteraction | None = None  # Discord


@dataclass
class Tally:
    """What happened to the commands and jobs, and what was wrong."""

    commands: Counter[str] = field(default_factory=Counter)  # platform -> /draw commands sent
    other_commands: int = 0
    accepted: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    delivered: Counter[str] = field(default_factory=Counter)  # jobs done
    failed: Counter[str] = field(default_factory=Counter)  # jobs failed (refunded, told)
    cancelled: Counter[str] = field(default_factory=Counter)
    failure_codes: Counter[str] = field(default_factory=Counter)
    crash_artefacts: Counter[str] = field(default_factory=Counter)
    refused_down: int = 0  # refused at once because the image service was marked down (the breaker)
    late_acks: int = 0  # Discord: the bot answered after the 3 s deadline (Discord told the user)
    pending: int = 0  # not finished yet (during the drain)
    problems: list[str] = field(default_factory=list)

    def problem(self, text: str) -> None:
        self.problems.append(text)


def _reply_target(call: Call) -> int | None:
    reply = call.params.get("reply_parameters")
    if isinstance(reply, dict) and "message_id" in reply:
        return int(reply["message_id"])
    value = call.params.get("reply_to_message_id")
    return int(value) if value is not None else None


def _job_ids(names: Iterable[str], pattern: re.Pattern[str]) -> set[int]:
    return {int(m.group(1)) for name in names if name and (m := pattern.match(name))}


class Ledger:
    """Puts the fakes' records and the job rows side by side: one outcome per command, and the problems."""

    def __init__(self, tg: SoakTelegram, dc: SoakDiscord, bot: BotProcess, statuses: frozenset[str]) -> None:
        self.tg, self.dc, self.bot, self.statuses = tg, dc, bot, statuses
        self.down = tuple(t(lang, "error.backend_down", seconds=0).split("0", 1)[0] for lang in LANGUAGES)

    def refused(self, tally: Tally, platform: str, text: str) -> None:
        tally.refused[platform] += 1
        if text.startswith(self.down):
            tally.refused_down += 1

    def killed_life(self, moment: float) -> bool:
        life = self.bot.life_at(moment)
        return life is not None and life.how == "kill"

    def tally(self, sent: list[Sent], jobs: list[JobRow], *, final: bool) -> Tally:
        tally = Tally()
        self._telegram(tally, [s for s in sent if s.planned.platform == "telegram"], jobs, final)
        self._discord(tally, [s for s in sent if s.planned.platform == "discord"], jobs, final)
        for job in jobs:
            if job.status in ("queued", "running"):
                tally.pending += 1
                if final:
                    tally.problem(f"job {job.id} left {job.status}")
            elif job.status != "done" and job.charged:
                tally.problem(f"job {job.id} {job.status} ({job.error}) still charges {job.charged} image(s)")
            elif job.status == "done" and (job.charged != job.images or job.delivered != job.images):
                tally.problem(f"job {job.id} done: {job.delivered} delivered, {job.charged} charged of {job.images}")
        return tally

    def _judge(
        self, tally: Tally, job: JobRow, deliveries: int, notices: int, final: bool, told_elsewhere: bool = False
    ) -> None:
        """One accepted job: exactly one delivery or one failure notice (SIGKILL duplicates excepted)."""
        platform = job.platform
        if job.status in ("queued", "running"):
            return
        if job.status == "done":
            if deliveries == 0:
                tally.pending += 1
                if final:
                    tally.problem(f"{platform} job {job.id} is done but nothing was delivered")
                return
            tally.delivered[platform] += 1
            if deliveries > 1 or notices:
                self._artefact(tally, job, f"delivered {deliveries}x, {notices} failure notice(s)")
            return
        if job.status == "cancelled":
            tally.cancelled[platform] += 1
            if deliveries or notices:
                self._artefact(tally, job, f"cancelled after {deliveries} delivery(ies), {notices} notice(s)")
            return
        tally.failed[platform] += 1
        tally.failure_codes[job.error or "?"] += 1
        must_tell = job.error != "delivery_gone"  # nobody can be told when the chat is gone
        if must_tell and notices == 0 and not told_elsewhere:
            tally.pending += 1
            if final:
                tally.problem(f"{platform} job {job.id} failed ({job.error}) and the user was never told")
            return
        if deliveries or notices > 1:
            self._artefact(tally, job, f"failed ({job.error}) after {deliveries} delivery(ies), {notices} notice(s)")

    @staticmethod
    def _artefact(tally: Tally, job: JobRow, what: str) -> None:
        if job.crashed:
            tally.crash_artefacts[f"{job.platform} job re-run after SIGKILL: delivered again or told twice"] += 1
        else:
            tally.problem(f"{job.platform} job {job.id} (attempts {job.attempts}): {what}")

    # Telegram -----------------------------------------------------------------------------------------

    def _telegram(self, tally: Tally, sent: list[Sent], jobs: list[JobRow], final: bool) -> None:
        replies: dict[tuple[int, int], list[str]] = defaultdict(list)
        deliveries: Counter[int] = Counter()
        for call in self.tg.calls:
            if not (call.done and call.ok):
                continue
            if call.method == "sendMessage":
                target = _reply_target(call)
                if target is not None:
                    replies[(int(call.params["chat_id"]), target)].append(str(call.params.get("text", "")))
            elif call.method in ("sendPhoto", "sendDocument", "sendMediaGroup"):
                for job_id in _job_ids(call.file_names.values(), _JOB_FILE):
                    deliveries[job_id] += 1
        by_command = {(int(j.route["chat_id"]), int(j.route["reply_to"])): j for j in jobs if j.platform == "telegram"}
        for s in sent:
            key = (s.chat_id, s.message_id)
            texts = replies.get(key, [])
            notices = [text for text in texts if text not in self.statuses]
            if s.planned.kind != "draw":
                tally.other_commands += 1
                if not notices:
                    self._unanswered(tally, s, final)
                continue
            tally.commands["telegram"] += 1
            job = by_command.get(key)
            if job is None:
                if notices:
                    self.refused(tally, "telegram", notices[0])
                else:
                    self._unanswered(tally, s, final)
                if len(notices) < len(texts):
                    tally.problem(f"telegram command {key}: a job status was shown but no job exists")
                continue
            tally.accepted["telegram"] += 1
            self._judge(tally, job, deliveries[job.id], len(notices), final)

    def _unanswered(self, tally: Tally, s: Sent, final: bool) -> None:
        # Telegram updates are kept in the bot's inbox until handled (bot/chats/inbox.py), so one a killed process
        # had fetched is handled after the restart: an unanswered Telegram command is a problem, kill or not.
        tally.pending += 1
        if final:
            what = s.planned.text if s.planned.platform == "telegram" else s.planned.options
            tally.problem(f"{s.planned.platform} command from {s.planned.user} never answered: {what!r}")

    def _not_since(self, moment: float) -> bool:
        life = self.bot.life_at(moment)
        return life is not None and life.ended is not None

    # Discord ------------------------------------------------------------------------------------------

    def _discord(self, tally: Tally, sent: list[Sent], jobs: list[JobRow], final: bool) -> None:
        app = str(self.dc.application_id)
        deliveries: Counter[int] = Counter()
        edits: dict[str, list[str]] = defaultdict(list)  # interaction token -> texts it was edited to
        channel_notices: Counter[int] = Counter()  # user id -> failure notices posted to a channel
        late: set[str] = set()
        for call in self.dc.calls:
            if call.status == 404 and call.path.startswith("/interactions/"):
                late.add(call.path.split("/")[3])
            if not 200 <= call.status < 300:
                continue
            names = [name for name, _ in call.files.values()]
            for job_id in _job_ids(names, _DISCORD_FIRST_FILE):
                deliveries[job_id] += 1
            if names or not isinstance(call.json, dict):
                continue
            content = call.json.get("content")
            if not isinstance(content, str) or content in self.statuses:
                continue
            if call.method == "PATCH" and call.path.startswith(f"/webhooks/{app}/"):
                edits[call.path.split("/")[3]].append(content)
            elif call.method == "POST" and call.path.startswith("/channels/"):
                match = re.match(r"<@(\d+)> ", content)
                if match:
                    channel_notices[int(match.group(1))] += 1
        by_interaction = {int(j.route["interaction_id"]): j for j in jobs if j.platform == "discord"}
        for s in sent:
            rec = s.interaction
            assert rec is not None
            tally.commands["discord"] += 1
            job = by_interaction.get(rec.id)
            if job is None:
                if rec.response_type == 4 or any(f.ephemeral for f in rec.followups):
                    answer = rec.original or next(f for f in rec.followups if f.ephemeral)
                    self.refused(tally, "discord", answer.content)
                elif rec.token in late:
                    tally.late_acks += 1
                elif self.killed_life(s.at) and self._not_since(s.at):
                    tally.crash_artefacts["discord command lost with the process it was dispatched to"] += 1
                else:
                    self._unanswered(tally, s, final)
                continue
            tally.accepted["discord"] += 1
            if rec.token in late:
                tally.late_acks += 1
            notices = len(edits.get(rec.token, []))
            told_in_channel = False
            if notices == 0 and job.status == "failed" and channel_notices[rec.user_id] > 0:
                channel_notices[rec.user_id] -= 1
                told_in_channel = True
            self._judge(tally, job, deliveries[job.id], notices, final, told_elsewhere=told_in_channel)


# The run --------------------------------------------------------------------------------------------------


@dataclass
class SoakReport:
    config: str
    seconds: float
    commands: dict[str, int]
    other_commands: int
    accepted: dict[str, int]
    refused: dict[str, int]
    delivered: dict[str, int]
    failed_refunded: dict[str, int]
    cancelled: dict[str, int]
    failure_codes: dict[str, int]
    crash_artefacts: dict[str, int]
    refused_down: int
    late_acks: int
    faults: dict[str, int]
    generations: int
    outage: str
    telegram_429s: int
    discord_429s: int
    lives: list[str]
    rss: dict[str, Any]
    log_bytes: int
    log_errors: dict[str, int]
    secrets_checked: int
    problems: list[str]

    def lines(self) -> list[str]:
        def per(d: dict[str, int]) -> str:
            return ", ".join(f"{k} {v}" for k, v in sorted(d.items())) or "0"

        rss = self.rss
        out = [
            f"soak ({self.config}): {self.seconds:.0f} s",
            f"  /draw commands: {per(self.commands)}; other commands {self.other_commands}",
            f"  accepted: {per(self.accepted)}; refused (told): {per(self.refused)}, of which "
            f"{self.refused_down} while the image service was marked down",
            f"  delivered: {per(self.delivered)}; failed+refunded (told): {per(self.failed_refunded)}; "
            f"cancelled: {per(self.cancelled)}",
            f"  failures by code: {per(self.failure_codes)}",
            f"  SIGKILL artefacts (allowed): {per(self.crash_artefacts)}; Discord late acknowledgements: "
            f"{self.late_acks}",
            f"  generations {self.generations}; faults injected: {sum(self.faults.values())} ({per(self.faults)})",
            f"  image API outage: {self.outage}; Telegram 429s {self.telegram_429s}; Discord 429s {self.discord_429s}",
            f"  bot lives: {'; '.join(self.lives)}",
            f"  RSS (first life, {rss.get('samples', 0)} samples): first quarter {rss.get('first_mib', 0):.1f} MiB, "
            f"last quarter {rss.get('last_mib', 0):.1f} MiB, growth {rss.get('growth', 0) * 100:+.1f} %, "
            f"peak {rss.get('peak_mib', 0):.1f} MiB (quarters {rss.get('quarters_mib', [])})",
            f"  log: {self.log_bytes / 1e6:.1f} MB at DEBUG, {self.secrets_checked} secrets absent; "
            f"ERROR lines: {per(self.log_errors)}",
        ]
        if self.problems:
            out.append(f"  PROBLEMS ({len(self.problems)}):")
            out += [f"    {p}" for p in self.problems[:40]]
        else:
            out.append("  no problems")
        return out


def bot_env(config: SoakConfig, workdir: Path, tg: SoakTelegram, dc: SoakDiscord, qf: SoakQianfan) -> dict[str, str]:
    ambient = ("SDBOT_", "TELEGRAM_", "DISCORD_", "QIANFAN_", "STABILITY_", "MODELSLAB_", "BEDROCK_", "A1111_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(ambient)}
    env.update(
        {
            "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
            "SOAK_DISCORD_API": dc.api_base,
            "SOAK_DISCORD_GATEWAY": dc.gateway_url,
            "TELEGRAM_BOT_TOKEN": tg.token,
            "TELEGRAM_API_URL": tg.url,
            "DISCORD_BOT_TOKEN": dc.token,
            "SDBOT_DB": str(workdir / "sdbot.db"),
            "SDBOT_LOG_LEVEL": "DEBUG",
            "SDBOT_BACKEND": "qianfan",
            "QIANFAN_API_KEY": qf.api_key,
            "QIANFAN_SECRET_KEY": qf.secret_key,
            "QIANFAN_BASE_URL": qf.url,
            "SDBOT_BACKEND_TIMEOUT": str(qf.timeout),
            "SDBOT_BACKEND_CONNECT_TIMEOUT": "1",
            "SDBOT_BACKEND_RETRIES": "2",
            "SDBOT_BACKEND_CONCURRENCY": str(config.concurrency),
            "SDBOT_DAILY_IMAGES": "2000",
            "SDBOT_RATE_PER_MINUTE": "6",
            "SDBOT_MAX_PENDING": "3",
            "SDBOT_JOB_MAX_AGE": "3600",
            # The circuit breaker (bot/jobs/breaker.py) trips during the outage and recovers by itself after it.
            "SDBOT_BREAKER_FAILURES": "4",
            "SDBOT_BREAKER_COOLDOWN": str(config.breaker_cooldown),
        }
    )
    return env


class Soak:
    def __init__(self, config: SoakConfig, workdir: Path) -> None:
        self.config = config
        self.workdir = workdir
        rng = random.Random(config.seed)
        self.rng_chaos = random.Random(rng.getrandbits(64))
        self.rng_faults = random.Random(rng.getrandbits(64))
        secret = random.Random(rng.getrandbits(64))
        token = f"{secret.randrange(10**9, 10**10)}:AAsoak{secret.getrandbits(160):040x}"
        self.tg = SoakTelegram(token)
        self.dc = SoakDiscord(f"soak-discord-{secret.getrandbits(192):048x}", ack_deadline=3.0)
        self.qf = SoakQianfan(
            random.Random(rng.getrandbits(64)),
            config.fault_rate,
            timeout=2.0,
            api_key=f"soak-ak-{secret.getrandbits(128):032x}",
            secret_key=f"soak-sk-{secret.getrandbits(128):032x}",
            expires_in=40,  # tokens are renewed every ~36 s: redaction must keep up with new ones
        )
        self.log_path = workdir / "bot.log"
        self.sent: list[Sent] = []
        self.rss: list[tuple[float, int, int]] = []  # (monotonic, life, KiB)
        self.outage_note = "none"
        self.injected_429 = {"telegram": 0, "discord": 0}
        self.problems: list[str] = []
        self.bot: BotProcess | None = None
        self.t0 = 0.0

    async def run(self) -> SoakReport:
        started = time.monotonic()
        async with self.tg, self.dc, self.qf:
            env = bot_env(self.config, self.workdir, self.tg, self.dc, self.qf)
            bot = self.bot = BotProcess(env, self.workdir, self.log_path)
            sampler: asyncio.Task[None] | None = None
            try:
                await bot.start(self.tg, self.dc)
                self.t0 = time.monotonic()
                sampler = asyncio.create_task(self._sample_rss())
                async with asyncio.TaskGroup() as group:  # one failing cancels the others
                    group.create_task(self._send_telegram())
                    group.create_task(self._send_discord())
                    group.create_task(self._outage())
                    group.create_task(self._chaos())
                    group.create_task(self._telegram_429s())
                    group.create_task(self._discord_429s())
                await self._drain()
            finally:
                if sampler is not None:
                    sampler.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await sampler
                if bot.proc is not None and bot.proc.returncode is None:
                    code = await bot.stop("term")
                    if code != 0:
                        self.problems.append(f"the bot exited with {code} after SIGTERM")
            return await self._report(time.monotonic() - started)

    # Load ---------------------------------------------------------------------------------------------

    async def _until(self, at: float) -> None:
        delay = self.t0 + at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    async def _send_telegram(self) -> None:
        for planned in schedule(self.config):
            if planned.platform != "telegram":
                continue
            await self._until(planned.at)
            update = self.tg.send_text(planned.user, planned.text, language_code=planned.language)
            message = update["message"]
            self.sent.append(Sent(planned, time.monotonic(), planned.user, message["message_id"], update["update_id"]))

    async def _send_discord(self) -> None:
        assert self.bot is not None
        for planned in schedule(self.config):
            if planned.platform != "discord":
                continue
            await self._until(planned.at)
            while True:
                await asyncio.wait_for(self.bot.serving.wait(), 120)
                try:
                    rec = await self.dc.invoke_command(
                        "draw", planned.options, user_id=planned.user, locale=planned.language, dm=planned.dm
                    )
                except (RuntimeError, TimeoutError, ConnectionError):
                    # The bot went down under our feet, before the interaction reached it: send it to the next life.
                    await asyncio.sleep(0.1)
                    continue
                self.sent.append(Sent(planned, rec.created_at, interaction=rec))
                break

    async def _outage(self) -> None:
        if self.config.outage_seconds <= 0:
            return
        await self._until(self.config.outage_at)
        await self.qf.go_down()
        began = time.monotonic()
        await asyncio.sleep(self.config.outage_seconds)
        await self.qf.come_back()
        self.outage_note = (
            f"{time.monotonic() - began:.1f} s at +{self.config.outage_at:.0f} s, "
            f"{self.qf.refused_while_down} open-connection request(s) cut"
        )

    async def _chaos(self) -> None:
        """One SIGTERM (a deploy) then the SIGKILLs, at seeded moments in the crash window, each restarted."""
        assert self.bot is not None
        events = ["term"] + ["kill"] * self.config.kills
        moments = sorted(self.rng_chaos.uniform(self.config.crash_from, self.config.crash_until) for _ in events)
        for how, at in zip(events, moments, strict=True):
            await self._until(at)
            life = self.bot.current
            assert life.ready is not None
            # Every life does some work first (dying during recovery over and over is another test), then dies
            # at a random moment: under load, with commands, generations, uploads and notices in flight.
            uptime = self.rng_chaos.uniform(2.0, self.config.max_uptime)
            await asyncio.sleep(max(0.0, life.ready + uptime - time.monotonic()))
            code = await self.bot.stop(how)
            if how == "term" and code != 0:
                self.problems.append(f"the bot exited with {code} after SIGTERM (life {life.number})")
            await self.bot.start(self.tg, self.dc)

    async def _telegram_429s(self) -> None:
        methods = ("sendMessage", "sendPhoto", "sendMediaGroup", "editMessageText", "sendChatAction")
        rng = random.Random(self.rng_chaos.getrandbits(64))
        moments = sorted(rng.uniform(0, self.config.send_seconds) for _ in range(self.config.telegram_429s))
        for at in moments:
            await self._until(at)
            self.tg.fail_next(rng.choice(methods), 429, retry_after=1)
            self.injected_429["telegram"] += 1

    async def _discord_429s(self) -> None:
        rng = random.Random(self.rng_chaos.getrandbits(64))
        moments = sorted(rng.uniform(0, self.config.send_seconds) for _ in range(self.config.discord_429s))
        for at in moments:
            await self._until(at)
            self.dc.fail_next("*", r"^/webhooks/", 429, retry_after=round(rng.uniform(0.1, 0.6), 2))
            self.injected_429["discord"] += 1

    async def _sample_rss(self) -> None:
        assert self.bot is not None
        while True:
            kib = self.bot.rss_kib()
            if kib is not None:
                self.rss.append((time.monotonic(), self.bot.current.number, kib))
            await asyncio.sleep(0.5)

    async def _drain(self) -> None:
        """Until every command and job has its outcome (then a short quiet period), or ``drain_timeout``."""
        assert self.bot is not None
        ledger = Ledger(self.tg, self.dc, self.bot, self._statuses())
        deadline = time.monotonic() + self.config.drain_timeout
        settled_since: float | None = None
        while time.monotonic() < deadline:
            jobs = await asyncio.to_thread(read_jobs, self.db, self.bot.kills)
            busy = self.tg.unconfirmed + ledger.tally(self.sent, jobs, final=False).pending
            if busy:
                settled_since = None
            elif settled_since is None:
                settled_since = time.monotonic()
            elif time.monotonic() - settled_since >= 2.0:
                return
            await asyncio.sleep(0.5)
        self.problems.append(f"not everything settled within {self.config.drain_timeout:.0f} s of the last command")

    @property
    def db(self) -> Path:
        return self.workdir / "sdbot.db"

    def _statuses(self) -> frozenset[str]:
        return status_texts(self.config.telegram_commands + self.config.discord_commands + 10)

    # Checks -------------------------------------------------------------------------------------------

    async def _report(self, seconds: float) -> SoakReport:
        assert self.bot is not None
        jobs = read_jobs(self.db, self.bot.kills)
        tally = Ledger(self.tg, self.dc, self.bot, self._statuses()).tally(self.sent, jobs, final=True)
        problems = self.problems + tally.problems
        problems += await self._check_ledger(jobs)
        planned = schedule(self.config)
        if len(self.sent) != len(planned):
            problems.append(f"{len(planned) - len(self.sent)} planned command(s) were never sent")
        for life in self.bot.lives:
            if life.ready is None:
                problems.append(f"bot life {life.number} never became ready")
        log = self.log_path.read_bytes().decode("utf-8", "replace") if self.log_path.exists() else ""
        secrets = self._secrets()
        problems += leaks(log, secrets)
        if "getUpdates" not in log or "/webhooks/" not in log or "text2image" not in log:
            problems.append("the bot's log lacks the request lines the secret check relies on (DEBUG not on?)")
        rss = rss_trend([(at, kib) for at, life, kib in self.rss if life == 1], self.t0, self.config)
        limit = self.config.rss_growth_limit
        if limit is not None and rss.get("growth", 0.0) > limit:
            problems.append(f"RSS grew {rss['growth'] * 100:.1f} % over the first life (limit {limit * 100:.0f} %)")
        return SoakReport(
            config=self.config.name,
            seconds=seconds,
            commands=dict(tally.commands),
            other_commands=tally.other_commands,
            accepted=dict(tally.accepted),
            refused=dict(tally.refused),
            delivered=dict(tally.delivered),
            failed_refunded=dict(tally.failed),
            cancelled=dict(tally.cancelled),
            failure_codes=dict(tally.failure_codes.most_common()),
            crash_artefacts=dict(tally.crash_artefacts),
            refused_down=tally.refused_down,
            late_acks=tally.late_acks,
            faults=dict(self.qf.injected.most_common()),
            generations=len(self.qf.generate_calls),
            outage=self.outage_note,
            telegram_429s=self.injected_429["telegram"],
            discord_429s=self.injected_429["discord"],
            lives=[
                f"{life.number}: {(life.ended or time.monotonic()) - life.started:.0f} s, "
                f"{life.how or 'running'}{'' if life.exit_code is None else f' ({life.exit_code})'}"
                for life in self.bot.lives
            ],
            rss=rss,
            log_bytes=len(log.encode()),
            log_errors=error_lines(log),
            secrets_checked=len(secrets) + 1,  # + every Discord interaction token, by their common prefix
            problems=problems,
        )

    async def _check_ledger(self, jobs: list[JobRow]) -> list[str]:
        problems = []
        store = await SQLiteStorage.open(self.db)
        try:
            mismatches = await usage_matches_jobs(store)
            if mismatches:
                problems.append(f"usage counters differ from the job ledger: {mismatches[:5]}")
            usage = await store.fetchall(
                "SELECT day, sum(images) AS images FROM usage WHERE scope = 'user' GROUP BY day"
            )
        finally:
            await store.close()
        done: Counter[str] = Counter()
        for job in jobs:
            if job.status == "done":
                done[job.day] += job.charged
        counted = {row["day"]: row["images"] for row in usage if row["images"]}
        if counted != {day: n for day, n in done.items() if n}:
            problems.append(f"daily usage {counted} is not the images of the done jobs {dict(done)}")
        return problems

    def _secrets(self) -> list[str]:
        values = [
            self.tg.token,
            self.tg.token.split(":", 1)[1],
            self.dc.token,
            self.qf.api_key,
            self.qf.secret_key,
            *self.qf.issued_secrets,
        ]
        return list(dict.fromkeys(values))


def leaks(log: str, secrets: list[str]) -> list[str]:
    found = [f"a secret reached the log: {secret[:6]}…" for secret in secrets if secret and secret in log]
    count = log.count(INTERACTION_TOKEN_PREFIX)
    if count:
        found.append(f"Discord interaction tokens reached the log {count} time(s)")
    return found


def error_lines(log: str) -> dict[str, int]:
    """ERROR and CRITICAL log lines by logger and the start of the message (for the report)."""
    counts: Counter[str] = Counter()
    for match in re.finditer(r" (ERROR|CRITICAL) ([\w.]+): (.{0,60})", log):
        counts[f"{match.group(2)}: {match.group(3)}"] += 1
    return dict(counts.most_common(8))


def rss_trend(samples: list[tuple[float, int]], t0: float, config: SoakConfig) -> dict[str, Any]:
    """Median RSS of the first and last quarter of the samples taken after the warm-up (the first 15 % of
    the sending time)."""
    warm = [kib for at, kib in samples if at - t0 >= 0.15 * config.send_seconds]
    if len(warm) < 8:
        return {"samples": len(warm)}
    quarter = len(warm) // 4
    medians = [statistics.median(warm[i * quarter : (i + 1) * quarter]) / 1024 for i in range(4)]
    return {
        "samples": len(warm),
        "first_mib": medians[0],
        "last_mib": medians[3],
        "quarters_mib": [round(m, 1) for m in medians],
        "growth": (medians[3] - medians[0]) / medians[0],
        "peak_mib": max(warm) / 1024,
    }


async def run(config: SoakConfig, workdir: Path | None = None) -> SoakReport:
    if workdir is not None:
        return await Soak(config, workdir).run()
    with tempfile.TemporaryDirectory(prefix="sdbot-soak-") as tmp:
        return await Soak(config, Path(tmp)).run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="5,000 Telegram + 1,000 Discord commands (minutes)")
    parser.add_argument("--seed", type=int, help="another schedule, fault sequence and crash moments")
    parser.add_argument("--workdir", type=Path, help="keep the database and the bot's log here")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    config = FULL if args.full else SHORT
    if args.seed is not None:
        config = dataclasses.replace(config, seed=args.seed)
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
    report = asyncio.run(run(config, args.workdir))
    if args.json:
        print(json.dumps(dataclasses.asdict(report), indent=2, ensure_ascii=False))
    else:
        print("\n".join(report.lines()))
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
