"""Several image services as one (``SDBOT_BACKENDS``): two GPUs, or a GPU and a paid service behind it. A job goes
to a member that can draw it and has a free slot, the least busy first; a member that keeps failing is marked down
by its own breaker; a job whose member fails with an outage or a problem of that member is drawn again by another,
with the same seed, so the user is charged once and sees one result. ``--model NAME`` picks a member."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Self

from bot.backends.base import Backend, CheckReport, Finding, GeneratedImage, ProgressCallback, ServiceState
from bot.draw.capabilities import Capabilities
from bot.draw.grammar import parse, render_command
from bot.draw.validation import validate
from bot.errors import BackendError, ConfigError, DrawError, SdbotError
from bot.jobs.breaker import Breaker
from bot.messages.i18n import Msg
from bot.process import redact

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.draw.request import DrawRequest

log = logging.getLogger(__name__)

NAME = "pool"
# Failures of the member, not of the request: another member may well draw it.
FAILOVER = frozenset(
    {
        "backend_unavailable",
        "backend_timeout",
        "backend_rate_limited",
        "backend_quota_exhausted",
        "backend_auth_failed",
        "backend_config",
        "backend_bad_image",
    }
)


def prefix(name: str) -> str:
    """The variables' prefix of member ``name``: ``gpu1`` -> ``GPU1_``."""
    return name.upper() + "_"


def member_settings(settings: Settings, name: str) -> Settings:
    """The settings member ``name`` runs with: every variable, its own prefixed ones winning. A member named like
    a service (``comfyui``) is that service unless ``<NAME>_SDBOT_BACKEND`` says otherwise."""
    from bot.config import BACKENDS
    from bot.config import Settings as SettingsType

    own = prefix(name)
    environ = dict(settings.environ)
    environ.update({key.removeprefix(own): value for key, value in settings.environ.items() if key.startswith(own)})
    if own + "SDBOT_BACKEND" not in settings.environ:
        if name not in BACKENDS or name == NAME:
            raise ConfigError("config_missing", variable=own + "SDBOT_BACKEND", reason=Msg("config.reason.member"))
        environ["SDBOT_BACKEND"] = name
    environ.pop("SDBOT_BACKENDS", None)
    try:
        return SettingsType.from_env(environ, env_file=None)
    except ConfigError as exc:
        raise _prefixed(exc, own, settings.environ) from None


def _prefixed(exc: ConfigError, own: str, environ: Mapping[str, str]) -> ConfigError:
    """A member's configuration error naming the variables as the operator sets them for that member."""
    names = [name if name in environ and own + name not in environ else own + name for name in exc.variables]
    params = {key: value for key, value in exc.params.items() if key != "variable"}
    return ConfigError(exc.code, variable=names, **params)


@dataclass(eq=False)
class Member:
    name: str
    backend: Backend
    slots: int
    breaker: Breaker
    running: int = 0


class PoolBackend(Backend):
    name = NAME

    def __init__(self, members: list[Member]) -> None:
        self.members = members
        self.slots: int | None = sum(member.slots for member in members)  # the core runs this many jobs at once
        self._changed = asyncio.Condition()

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        raise NotImplementedError("built by bot.backends.create_backend, which passes itself to build()")

    @classmethod
    def build(cls, settings: Settings, create_backend: Callable[[Settings], Backend]) -> Self:
        """The pool of ``SDBOT_BACKENDS``, each member made by ``create_backend`` from its own settings."""
        # A member that fails to build leaves the others unused: their clients hold no connection before a request.
        members: list[Member] = []
        for name in settings.backends:
            own = member_settings(settings, name)
            # Its prefixed secrets are secrets too (GPU1_COMFYUI_URL's password): sdbot registered the shared ones.
            redact.register(*own.secrets())
            try:
                backend = create_backend(own)
            except ConfigError as exc:
                raise _prefixed(exc, prefix(name), settings.environ) from None
            breaker = Breaker(own.breaker_failures, own.breaker_cooldown)
            members.append(Member(name, backend, own.backend_concurrency, breaker))
        return cls(members)

    async def aclose(self) -> None:
        await asyncio.gather(*(member.backend.aclose() for member in self.members), return_exceptions=True)

    # -- capabilities ------------------------------------------------------------------------------------

    async def _member_caps(self, member: Member) -> Capabilities:
        # Named after the member, so that a refusal says which of the operator's services refused. Not kept here:
        # each member keeps its own, and forgets them when its server changes (A1111's samplers).
        return dataclasses.replace(await member.backend.capabilities(), backend=member.name)

    async def _known(self) -> list[tuple[Member, Capabilities]]:
        """Each member with its capabilities; a member that cannot tell now (its server is down) is left out
        until it can. Raises the first member's error when none can."""
        results = await asyncio.gather(*(self._member_caps(m) for m in self.members), return_exceptions=True)
        known = [(m, caps) for m, caps in zip(self.members, results, strict=True) if isinstance(caps, Capabilities)]
        if not known:
            error = next(r for r in results if isinstance(r, BaseException))
            raise error
        for member, result in zip(self.members, results, strict=True):
            if isinstance(result, BaseException):
                log.warning("pool member %s cannot tell its capabilities: %r", member.name, result)
        return known

    async def capabilities(self) -> Capabilities:
        """What any member takes (a request is then checked against the members one by one)."""
        return union([caps for _, caps in await self._known()], [m.name for m in self.members])

    async def capabilities_of(self, service: str | None) -> Capabilities:
        member = next((m for m in self.members if m.name == service), None)
        return await self._member_caps(member) if member is not None else await self.capabilities()

    async def check_request(self, request: DrawRequest) -> None:
        await self._candidates(request)

    async def _candidates(self, request: DrawRequest, tried: Sequence[str] = ()) -> list[Member]:
        """The members that can draw ``request`` (the one ``--model`` names), in the operator's order, less
        ``tried``. Raises the member's own refusal for a ``--model``, else ``no_service``."""
        known = await self._known()
        if request.model is not None:
            known = [(m, caps) for m, caps in known if m.name == request.model]
        able: list[Member] = []
        refusals: list[DrawError] = []
        for member, caps in known:
            refusal = refused(request, caps)
            if refusal is None:
                able.append(member)
            else:
                refusals.append(refusal)
        if not able and request.model is not None and refusals:
            raise refusals[0]
        if not able:
            raise DrawError("no_service", services=[m.name for m, _ in known])
        return [m for m in able if m.name not in tried]

    # -- generate ----------------------------------------------------------------------------------------

    async def generate(
        self, request: DrawRequest, *, user: str, progress: ProgressCallback | None = None
    ) -> list[GeneratedImage]:
        tried: list[str] = []
        while True:
            member, trial = await self._take(request, tried)
            try:
                images = await member.backend.generate(request, user=user, progress=progress)
            except BackendError as exc:
                await self._release(member, exc, trial)
                tried.append(member.name)
                if exc.code not in FAILOVER or exc.user_fault or not await self._candidates(request, tried):
                    raise
                log.warning("pool: %s failed (%s %s); drawing with another member", member.name, exc.code,
                            exc.provider_code)  # fmt: skip
                continue
            except BaseException:
                await self._release(member, SdbotError("internal"), trial)
                raise
            await self._release(member, None, trial)
            return [dataclasses.replace(image, service=member.name) for image in images]

    async def _take(self, request: DrawRequest, tried: list[str]) -> tuple[Member, bool]:
        """A member for ``request`` with a slot taken: the least busy of those up, waiting for a slot when all
        are busy; whether it is its breaker's trial. Raises ``backend_down`` when every able member is down."""
        while True:
            able = await self._candidates(request, tried)
            async with self._changed:
                up = [m for m in able if m.breaker.retry_in() is None]
                if not up:
                    soonest = min(able, key=lambda m: m.breaker.retry_in() or 0)
                    raise soonest.breaker.error()
                free = [m for m in up if m.running < m.slots]
                if free:
                    member = min(free, key=lambda m: (m.running / m.slots, self.members.index(m)))
                    member.running += 1
                    break
                await self._changed.wait()
        verdict = await member.breaker.admit()
        if verdict == "refuse":  # it went down while this one waited: give the slot back, choose again
            await self._release(member, None, False, record=False)
            return await self._take(request, tried)
        return member, verdict == "trial"

    async def _release(self, member: Member, error: SdbotError | None, trial: bool, *, record: bool = True) -> None:
        if record and member.breaker.record(error, trial=trial):
            log.warning("pool member %s marked down after repeated failures", member.name)
        async with self._changed:
            member.running -= 1
            self._changed.notify_all()

    def services(self) -> dict[str, ServiceState]:
        return {m.name: ServiceState(m.running, m.slots, m.breaker.retry_in() is None) for m in self.members}

    # -- check -------------------------------------------------------------------------------------------

    async def check(self) -> CheckReport:
        """Every member's own check, each finding labelled with the member's name."""
        reports = await asyncio.gather(*(member.backend.check() for member in self.members))
        findings: list[tuple[str | Msg, Finding]] = []
        for member, report in zip(self.members, reports, strict=True):
            verdict = Msg("check.pool.ok" if report.ok else "check.pool.failed", {"kind": report.backend})
            findings.append((member.name, verdict))
            findings += [(Msg("check.pool.label", {"name": member.name, "label": label}), value)
                         for label, value in report.findings]  # fmt: skip
        return CheckReport(self.name, all(report.ok for report in reports), findings)


def refused(request: DrawRequest, caps: Capabilities) -> DrawError | None:
    """Why ``caps``' service cannot draw ``request`` (the options the user gave, checked as a /draw would be),
    or None."""
    if request.task == "upscale":
        return None if caps.upscale else DrawError("upscale_unsupported", backend=caps.backend)
    source = request.source
    picture = None if source is None else (source.width, source.height)
    plain = dataclasses.replace(request, seed=None, model=None, source=None)  # the seed was drawn, not typed
    try:
        validate(parse(render_command(plain), caps), caps, picture=picture)
    except DrawError as refusal:
        return refusal
    return None


def union(members: list[Capabilities], names: list[str]) -> Capabilities:
    """What at least one member takes."""

    def merged(values: Iterable[tuple[str, ...]]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(value for group in values for value in group))

    unsupported = frozenset.intersection(*(caps.unsupported for caps in members))
    return Capabilities(
        backend=NAME,
        sizes=merged(caps.sizes for caps in members),
        samplers=merged(caps.samplers for caps in members),
        styles=merged(caps.styles for caps in members),
        max_n=max(caps.max_n for caps in members),
        steps=(min(c.steps[0] for c in members), max(c.steps[1] for c in members)),
        cfg=(min(c.cfg[0] for c in members), max(c.cfg[1] for c in members)),
        negative_prompt=any(caps.negative_prompt for caps in members),
        seed=any(caps.seed for caps in members),
        prompt_max=max(caps.prompt_max for caps in members),
        negative_max=max(caps.negative_max for caps in members),
        unsupported=unsupported,
        models=tuple(names),
        image_to_image=any(caps.image_to_image for caps in members),
        strength=next((caps.strength for caps in members if caps.image_to_image), Capabilities.strength),
        upscale=any(caps.upscale for caps in members),
    )
