"""Quota days in ``SDBOT_QUOTA_TZ``: which day a moment belongs to, when the next one starts, and how to
tell a person how long they must wait (as :class:`~bot.messages.i18n.Msg`, rendered in their language)."""

from __future__ import annotations

import math
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from bot.messages.i18n import Msg


def day_of(when: float, tz: ZoneInfo) -> str:
    """The quota day (``YYYY-MM-DD`` in ``tz``) of the Unix time ``when``."""
    return datetime.fromtimestamp(when, tz).date().isoformat()


def next_day_start(when: float, tz: ZoneInfo) -> float:
    """The Unix time the quota day after ``when`` begins: the next local midnight in ``tz``.

    Where a DST change skips midnight, zoneinfo reads the missing 00:00 with the old offset, which is the
    first instant of the new day, so the answer is still right.
    """
    local_date = datetime.fromtimestamp(when, tz).date()
    return datetime.combine(local_date + timedelta(days=1), time(0), tzinfo=tz).timestamp()


def wait_msg(seconds: float) -> Msg:
    """``45 s``, ``12 min``, ``5 h 12 min``: rounded up, so nobody is told to come back too early."""
    seconds = max(0, math.ceil(seconds))
    if seconds < 60:
        return Msg("duration.seconds", {"s": max(seconds, 1)})
    minutes = math.ceil(seconds / 60)
    if minutes < 60:
        return Msg("duration.minutes", {"m": minutes})
    return Msg("duration.hours_minutes", {"h": minutes // 60, "m": minutes % 60})


def reset_msg(at: float, now: float, tz: ZoneInfo) -> Msg:
    """When a daily limit resets: local clock time, the zone and the wait, e.g. ``00:00 Asia/Shanghai``."""
    local = datetime.fromtimestamp(at, tz)
    return Msg("quota.reset_at", {"time": local.strftime("%H:%M"), "zone": tz.key, "wait": wait_msg(at - now)})
