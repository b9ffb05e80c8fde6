"""What a Discord job stores to deliver later, even from another process: the job's ``route``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import discord

TOKEN_LIFETIME = 15 * 60.0  # seconds Discord accepts an interaction token for follow-ups and edits
# Stop using a token a little before Discord does: an edit that starts at 14:59 may arrive at 15:01.
TOKEN_MARGIN = 20.0
DEFAULT_FILESIZE_LIMIT = 10 * 1024 * 1024  # bytes per file without server boosts


@dataclass(frozen=True, slots=True)
class Route:
    """Snowflakes are kept as strings in JSON so that tools without 64-bit integers read them intact."""

    application_id: int
    token: str
    interaction_id: int
    channel_id: int
    guild_id: int | None
    user_id: int
    expires_at: float  # Unix time after which ``token`` is no longer used
    filesize_limit: int
    age_restricted: bool = False  # the channel is age-restricted (NSFW): flagged pictures per SDBOT_NSFW_CHANNELS

    @classmethod
    def of(cls, interaction: discord.Interaction, *, lifetime: float = TOKEN_LIFETIME) -> Route:
        channel_id = interaction.channel_id
        if channel_id is None:  # every command and component interaction has one; keep mypy honest
            raise ValueError("interaction without a channel")
        return cls(
            application_id=interaction.application_id,
            token=interaction.token,
            interaction_id=interaction.id,
            channel_id=channel_id,
            guild_id=interaction.guild_id,
            user_id=interaction.user.id,
            expires_at=interaction.created_at.timestamp() + lifetime - TOKEN_MARGIN,
            filesize_limit=interaction.filesize_limit or DEFAULT_FILESIZE_LIMIT,
            age_restricted=age_restricted(interaction),
        )

    def to_json(self) -> dict[str, Any]:
        # Spelled out rather than dataclasses.asdict, which deep-copies field by field: once per admission,
        # it cost more than the rest of this module together.
        return {
            "application_id": str(self.application_id),
            "token": self.token,
            "interaction_id": str(self.interaction_id),
            "channel_id": str(self.channel_id),
            "guild_id": None if self.guild_id is None else str(self.guild_id),
            "user_id": str(self.user_id),
            "expires_at": self.expires_at,
            "filesize_limit": self.filesize_limit,
            "age_restricted": self.age_restricted,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Route:
        guild = data.get("guild_id")
        return cls(
            application_id=int(data["application_id"]),
            token=str(data["token"]),
            interaction_id=int(data["interaction_id"]),
            channel_id=int(data["channel_id"]),
            guild_id=int(guild) if guild is not None else None,
            user_id=int(data["user_id"]),
            expires_at=float(data["expires_at"]),
            filesize_limit=int(data.get("filesize_limit") or DEFAULT_FILESIZE_LIMIT),
            age_restricted=bool(data.get("age_restricted")),
        )

    def token_alive(self, now: float) -> bool:
        return now < self.expires_at


def age_restricted(interaction: discord.Interaction) -> bool:
    """Whether the interaction's channel is age-restricted (a thread: its parent's): Discord keeps NSFW content to
    those. A DM is not."""
    channel = interaction.channel
    is_nsfw = getattr(channel, "is_nsfw", None)
    return bool(is_nsfw()) if callable(is_nsfw) else False
