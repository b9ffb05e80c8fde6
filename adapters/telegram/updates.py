"""Long polling that survives an update PTB cannot parse: the rest of its batch is served."""

from __future__ import annotations

import logging
from typing import Any

from telegram import Update
from telegram.ext import ExtBot
from telegram.request import HTTPXRequest

log = logging.getLogger(__name__)

# PTB's message when a getUpdates answer does not parse; it appends the answer itself.
_PTB_PARSE_FAILURE = "Error while parsing updates!"


class UpdatesRequest(HTTPXRequest):
    """The request object for ``getUpdates`` only (PTB's ``get_updates_request``); keeps the latest answer's
    updates as sent."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batch: list[Any] = []

    # PTB declares it static but calls it on the request object, which is what lets one request keep the batch.
    def parse_json_payload(self, payload: bytes) -> dict[str, Any]:  # type: ignore[override]
        data = HTTPXRequest.parse_json_payload(payload)
        result = data.get("result") if isinstance(data, dict) else None
        self.batch = result if isinstance(result, list) else []
        return data


class _QuietParseFailure(logging.LoggerAdapter):  # type: ignore[type-arg]
    """PTB's bot logger, except that a batch failing to parse is not logged with its contents (user text):
    :class:`PollingBot` reads it update by update and says which could not be read."""

    def critical(self, msg: object, *args: Any, **kwargs: Any) -> None:
        if isinstance(msg, str) and msg.startswith(_PTB_PARSE_FAILURE):
            self.logger.info("a getUpdates answer could not be read whole; reading its updates one by one")
            return
        self.logger.critical(msg, *args, **kwargs)


class PollingBot(ExtBot[Any]):
    """PTB's bot with :meth:`get_updates` as described in the module documentation."""

    _LOGGER = _QuietParseFailure(ExtBot._LOGGER)  # type: ignore[assignment]

    def __init__(self, *args: Any, get_updates_request: UpdatesRequest, **kwargs: Any) -> None:
        # Set before PTB's __init__, which freezes the object's attributes.
        self._updates_request = get_updates_request
        super().__init__(*args, get_updates_request=get_updates_request, **kwargs)  # type: ignore[call-overload]

    async def get_updates(self, *args: Any, **kwargs: Any) -> tuple[Update, ...]:
        request = self._updates_request
        request.batch = []
        try:
            return await super().get_updates(*args, **kwargs)
        except Exception:
            if not request.batch:
                raise  # the request failed, not the parsing: PTB's updater retries
            return self._one_by_one(request.batch)

    def _one_by_one(self, batch: list[Any]) -> tuple[Update, ...]:
        """Every update of ``batch`` PTB can parse, the others as their bare ids."""
        updates: list[Update] = []
        for raw in batch:
            try:
                update = Update.de_json(raw, self)
            except Exception as exc:
                update_id = raw.get("update_id") if isinstance(raw, dict) else None
                # The update itself is not logged: it holds what users wrote.
                log.warning("Telegram update %s could not be read (%s); skipped", update_id, type(exc).__name__)
                if isinstance(update_id, int) and not isinstance(update_id, bool):
                    updates.append(Update(update_id))  # confirmed like any other; no handler matches it
                continue
            self.insert_callback_data(update)
            updates.append(update)
        return tuple(updates)
