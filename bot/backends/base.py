"""The one interface every image service implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, ClassVar, Self

from bot.draw.capabilities import Capabilities
from bot.errors import SdbotError
from bot.messages.i18n import Msg

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.draw.request import DrawRequest

# Called with a fraction 0..1 while a backend that can tell (A1111) generates.
ProgressCallback = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class GeneratedImage:
    """One image as the provider returned it. ``format`` is Pillow's name (PNG, JPEG, WEBP)."""

    data: bytes
    format: str
    width: int
    height: int
    seed: int | None = None
    filtered: bool = False  # the provider's safety filter replaced or blanked it
    ratio: str | None = None  # drawn at this aspect ratio, the size the service's own (bot.draw.shape)
    service: str | None = None  # the pool's member that drew it (bot.backends.pool)


@dataclass(frozen=True, slots=True)
class ServiceState:
    """One of a pool's services now: generations running, its slots, and whether its breaker lets jobs in."""

    running: int
    slots: int
    up: bool


# One thing ``sdbot check`` found: plain text, a catalog message, or an error (rendered like users see it).
Finding = str | Msg | SdbotError


@dataclass(frozen=True)
class CheckReport:
    """What ``sdbot check`` prints for a backend: each probe's label and what it found, in the reader's
    language when they are :class:`Msg` or errors."""

    backend: str
    ok: bool
    findings: list[tuple[str | Msg, Finding]] = field(default_factory=list)


class Backend(ABC):
    """An image service. Instances hold one ``httpx.AsyncClient`` (where they talk HTTP) for their life."""

    name: ClassVar[str]
    # Generations at once, when the backend knows better than SDBOT_BACKEND_CONCURRENCY (a pool: its members' sum).
    slots: int | None = None

    @classmethod
    @abstractmethod
    def from_settings(cls, settings: Settings) -> Self:
        """Build from configuration; raise ``ConfigError`` naming the variable that is missing or wrong."""

    @abstractmethod
    async def capabilities(self) -> Capabilities:
        """What this backend accepts. May ask the service once (A1111); cached afterwards."""

    @abstractmethod
    async def generate(
        self, request: DrawRequest, *, user: str, progress: ProgressCallback | None = None
    ) -> list[GeneratedImage]:
        """Generate ``request.n`` images. ``request.seed`` is always set by the caller. ``user`` is an opaque
        stable hash of the platform user (never the raw id). Failures raise :class:`bot.errors.BackendError`."""

    async def capabilities_of(self, service: str | None) -> Capabilities:
        """What the service that drew a picture accepts: this backend's own, or a pool member's."""
        return await self.capabilities()

    def services(self) -> dict[str, ServiceState]:
        """A pool's members by name (for ``/metrics``); a single service has none."""
        return {}

    async def check_request(self, request: DrawRequest) -> None:  # noqa: B027 - most backends take any valid one
        """Raise ``DrawError`` when no service here can draw ``request`` though each of its values is offered by
        one (a pool whose members differ). Called at admission, after validation."""

    @abstractmethod
    async def check(self) -> CheckReport:
        """Prove the configuration and credentials work without generating (or at the cheapest honest cost)."""

    async def aclose(self) -> None:  # noqa: B027 - backends without resources need nothing here
        """Release network resources."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
