"""Long polling that survives an update python-telegram-bot cannot parse.

PTB parses a whole ``getUpdates`` answer at once. When one update fails to parse (a field missing or of a
type this PTB does not expect, say after a Bot API change), PTB logs it and drops the batch *without
confirming it*, so the next poll fetches the same batch and fails again: the bot never sees another update,
and stopping it raises from the final confirming poll. Here each update is checked on its own first, and one
that cannot be parsed is replaced by its bare ``update_id``: PTB confirms it like any other, no handler
matches it, and the updates around it are served.

Webhook mode is not covered: PTB's webhook server answers such an update with 400, and Telegram retries it
for a while before giving up; nothing short of replacing PTB's server changes that.
"""

from __future__ import annotations

import logging
from typing import Any

from telegram import Update
from telegram.request import HTTPXRequest

log = logging.getLogger(__name__)


def parseable(update: Any) -> Any:
    """``update`` when PTB can parse it, else just its ``update_id`` (None when it has not even that)."""
    try:
        Update.de_json(update, None)
    except Exception as exc:
        update_id = update.get("update_id") if isinstance(update, dict) else None
        # The update itself is not logged: it holds what users wrote.
        log.warning("Telegram update %s could not be read (%s); skipped", update_id, type(exc).__name__)
        return {"update_id": update_id} if isinstance(update_id, int) and not isinstance(update_id, bool) else None
    return update


class UpdatesRequest(HTTPXRequest):
    """The request object for ``getUpdates`` only (PTB's ``get_updates_request``)."""

    @staticmethod
    def parse_json_payload(payload: bytes) -> dict[str, Any]:
        data = HTTPXRequest.parse_json_payload(payload)
        result = data.get("result") if isinstance(data, dict) else None
        if isinstance(result, list):
            data["result"] = [kept for update in result if (kept := parseable(update)) is not None]
        return data
