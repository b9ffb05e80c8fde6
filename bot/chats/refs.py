"""Who asks and where: :class:`UserRef` and :class:`ChatRef`, as adapters describe them."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from bot.draw import params
from bot.draw.sanitize import clean
from bot.errors import SdbotError


@dataclass(frozen=True, slots=True)
class UserRef:
    """A platform user as an adapter sees them in an update.

    ``language_code`` is what the platform reports (Telegram ``User.language_code``, Discord
    ``interaction.locale``); it decides the language of replies unless the user chose one with ``/lang``.
    """

    platform: str
    user_id: str
    language_code: str | None = None
    display_name: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "user_id", str(self.user_id))
        # Names are stored and shown (/admin stats): no control characters, overrides or lone surrogates,
        # which SQLite could not even encode.
        if self.display_name is not None:
            object.__setattr__(self, "display_name", clean(self.display_name))

    @property
    def key(self) -> str:
        return f"{self.platform}:{self.user_id}"


@dataclass(frozen=True, slots=True)
class ChatRef:
    """Where a request was made, for the per-chat image cap.

    ``chat_id``: Telegram's chat id; on Discord the guild (server) id, so the cap is per server, or the DM
    channel id with ``is_group=False``. Private chats have no cap. Where to *deliver* is the adapter's
    ``route``, not this.
    """

    platform: str
    chat_id: str
    is_group: bool
    title: str | None = None
    # Asked where moderation is strict whatever the chat's setting: a Discord channel that is not age-restricted.
    strict: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "chat_id", str(self.chat_id))
        if self.title is not None:
            object.__setattr__(self, "title", clean(self.title))

    @property
    def key(self) -> str:
        return f"{self.platform}:{self.chat_id}"


def parse_key(text: str, platforms: Collection[str], default_platform: str | None = None) -> str:
    """``telegram:123`` (or ``123`` on ``default_platform``) -> ``"telegram:123"``; chat ids may be negative.

    Raises ``SdbotError("bad_user")`` for anything else, so admin commands can say what they expect.
    """
    platform, sep, ident = text.strip().rpartition(":")
    platform = platform.lower() if sep else (default_platform or "")
    number = ident.removeprefix("-")
    if platform not in platforms or not params.is_whole_number(number):
        raise SdbotError("bad_user", value=text.strip() or "∅")
    return f"{platform}:{'-' if number != ident else ''}{int(number)}"  # full-width digits: the same id


@dataclass(frozen=True, slots=True)
class PictureRef:
    """A picture someone sent to draw from, as its platform names it: ``ref`` is what the platform's sink reads
    with ``fetch_picture`` (a Telegram file_id, a Discord attachment); ``durable`` says the platform gives it
    again later (else the job keeps the picture's bytes until it ends)."""

    ref: str
    durable: bool
    size: int | None = None  # bytes, when the platform tells before the download
