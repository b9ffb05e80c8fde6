"""What an operator's tools (``sdbot check``, ``sdbot draw``) add to the sentence a chat user gets: where the
request went, the HTTP status, the provider's own code and words. Chat never shows any of it; the CLI prints
it through :func:`bot.process.redact.scrub`, so no secret rides along."""

from __future__ import annotations

from bot.errors import BackendError, SdbotError
from bot.process import redact

_LONGEST = 200  # characters of one value, so the detail stays a line an operator reads

# BackendError parameters worth an operator's eyes, in the order shown.
_FIELDS = (("url", "at"), ("status", "HTTP"), ("provider_message", "said"), ("detail", "cause"), ("reason", "reason"))


def operator_detail(error: SdbotError) -> str | None:
    """One line (``qianfan 110 · at http://… · HTTP 401 · said "…"``), or None when there is nothing to add."""
    if not isinstance(error, BackendError):
        return None
    parts = []
    if error.provider:
        code = f" {error.provider_code}" if error.provider_code is not None else ""
        parts.append(f"{error.provider}{code}")
    for key, label in _FIELDS:
        value = error.params.get(key)
        if value is not None and value != "":
            text = " ".join(str(value).split())  # one line: AWS's messages quote a whole canonical request
            text = text if len(text) <= _LONGEST else text[: _LONGEST - 1] + "…"
            parts.append(f'{label} "{text}"' if key == "provider_message" else f"{label} {text}")
    return redact.scrub(" · ".join(parts)) if parts else None
