"""A chat's moderation settings beside its /draw defaults (``/settings``): ``moderation`` (``standard``, or
``strict``: the block list's strict rules apply too) and, on Telegram, ``flagged`` (pictures the image service's
filter flagged: ``withhold``, or ``spoiler``: sent under Telegram's spoiler cover)."""

from __future__ import annotations

from collections.abc import Mapping

from bot.draw import params
from bot.errors import DrawError

POLICIES: Mapping[str, tuple[str, ...]] = {
    "moderation": ("standard", "strict"),
    "flagged": ("withhold", "spoiler"),
}
PLATFORM_ONLY: Mapping[str, str] = {"flagged": "telegram"}  # Discord decides by the channel (SDBOT_NSFW_CHANNELS)
# Other spellings people type, Chinese included.
_SPELLINGS: Mapping[str, str] = {
    "标准": "standard",
    "严格": "strict",
    "隐藏": "withhold",
    "hide": "withhold",
    "遮盖": "spoiler",
    "剧透": "spoiler",
}
NAMES: Mapping[str, str] = {"审核": "moderation", "标记图片": "flagged"}


def offered(name: str, platform: str) -> bool:
    return name in POLICIES and PLATFORM_ONLY.get(name, platform) == platform


def checked(name: str, value: str) -> str:
    """``value`` as stored for the setting ``name``, or ``DrawError`` ``setting_value`` listing the choices."""
    folded = params.fold(value)
    canonical = _SPELLINGS.get(value.strip(), folded)
    if canonical not in POLICIES[name]:
        raise DrawError("setting_value", option=name, value=value[:50], allowed=", ".join(POLICIES[name]))
    return canonical


def strict(settings: Mapping[str, str]) -> bool:
    return settings.get("moderation") == "strict"
