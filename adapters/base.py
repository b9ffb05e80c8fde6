"""What ``sdbot run`` needs from an adapter."""

from __future__ import annotations

from typing import Protocol

from bot.config import Settings
from bot.core import Core


class Adapter(Protocol):
    """One chat platform around a shared :class:`Core`.

    Construction registers the adapter's sink with ``core`` (before ``core.start()``), and must not touch the
    network. Then, in order: :meth:`prepare`, ``core.start()`` (recovered jobs may be delivered through the
    sink from here on), :meth:`start`, and at shutdown :meth:`stop`.
    """

    platform: str

    def __init__(self, core: Core, settings: Settings) -> None: ...

    async def prepare(self) -> None:
        """Connect and prove the token works, so that the sink can send. A refused token raises
        ``ConfigError("platform_auth_failed", variable=..., platform=...)``."""

    async def start(self) -> None:
        """Begin receiving users' commands (register command menus, start polling / the gateway)."""

    async def stop(self) -> None:
        """Stop receiving and close connections. Jobs still queued or running stay in the database."""
