"""The part of a backend that is the same for every HTTP image service: building it from the shared settings
(timeouts, retries), the one client it keeps for its life, fixed capabilities, and closing."""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING, Any, Self

import httpx

from bot.backends.base import Backend
from bot.backends.http import RetryPolicy, make_client
from bot.draw.capabilities import Capabilities
from bot.messages.i18n import Msg

if TYPE_CHECKING:
    from bot.config import Settings

# The constructors' defaults, for callers (tests, benchmarks) that build a backend without settings;
# from_settings always passes SDBOT_BACKEND_TIMEOUT and friends.
DEFAULT_TIMEOUT = 120.0
DEFAULT_CONNECT_TIMEOUT = 10.0


class HttpBackend(Backend):
    """A :class:`Backend` that talks to its service through one ``httpx.AsyncClient``, retrying under one
    :class:`RetryPolicy`."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float,
        connect_timeout: float,
        retry: RetryPolicy | None,
        caps: Capabilities | None,
        headers: dict[str, str] | None = None,
        auth: httpx.Auth | tuple[str, str] | None = None,
    ) -> None:
        """Subclasses register their secrets with :mod:`bot.process.redact` first, so that no log line or error from
        here on (the client carries them in headers or auth) can show them."""
        self._client = make_client(
            base_url, timeout=timeout, connect_timeout=connect_timeout, headers=headers, auth=auth
        )
        self._retry = retry or RetryPolicy()
        # None only where the capabilities come from the server: that backend overrides capabilities() (A1111).
        self._caps: Capabilities | None = caps

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        # Every HTTP backend takes the same SDBOT_BACKEND_* network settings; only its own come from options().
        return cls(
            **cls.options(settings),
            timeout=settings.backend_timeout,
            connect_timeout=settings.backend_connect_timeout,
            retry=RetryPolicy(retries=settings.backend_retries),
        )

    @classmethod
    @abstractmethod
    def options(cls, settings: Settings) -> dict[str, Any]:
        """This service's own constructor arguments from ``settings``. Raises ``ConfigError`` naming the
        variable that is missing or wrong (see :meth:`require`)."""

    @classmethod
    def config_reason(cls) -> Msg:
        """Why a variable is needed, as ``ConfigError`` tells the operator: this backend was chosen."""
        return Msg("config.reason.backend", {"backend": cls.name})

    @classmethod
    def require(cls, settings: Settings, *names: str) -> None:
        """``ConfigError`` for the first of the variables ``names`` that is not set."""
        settings.require(*names, reason=cls.config_reason())

    async def capabilities(self) -> Capabilities:
        assert self._caps is not None, "a backend without fixed capabilities overrides capabilities()"
        return self._caps

    async def aclose(self) -> None:
        await self._client.aclose()
