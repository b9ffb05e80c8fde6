"""What a failed ``getMe`` says about the server at ``TELEGRAM_API_URL``: the token refused, the server not
reached (or asking to wait), or an answer that is not the Bot API's. ``sdbot run`` and ``sdbot check`` read it
the same way, and PTB's own log of a body that is not JSON is kept to one line."""

from __future__ import annotations

import logging
from typing import Literal

from telegram.error import InvalidToken, NetworkError, RetryAfter, TelegramError

Failure = Literal["refused", "unreachable", "bad_answer"]

# An answer's body quoted in a log line or a check's detail: enough to recognise a proxy's error page.
_QUOTE = 160


def sign_in_failure(exc: Exception) -> tuple[Failure, str]:
    """The kind of failure and its cause, for the operator."""
    if isinstance(exc, RetryAfter):  # flood control, e.g. after many restarts in a row: the token is fine
        return "unreachable", f"HTTP 429, asked to wait {exc.retry_after} s"
    chain = _chain(exc)
    # PTB raises an HTTP error "from" its failure to parse the body: not JSON, so not the Bot API speaking.
    not_json = any(type(e) is TelegramError and e.message == _NOT_JSON for e in chain)
    # The innermost of PTB's errors says what the server answered (the outer one of a refused getMe repeats
    # the token).
    said = next((e.message for e in reversed(chain) if isinstance(e, TelegramError) and e.message != _NOT_JSON), "")
    if isinstance(exc, InvalidToken):  # 401 or 404
        return ("bad_answer", _short(said)) if not_json else ("refused", _short(said))
    if isinstance(exc, NetworkError):  # no connection, a timeout, or a 5xx (a proxy's error page included)
        return "unreachable", _short(said) if said else type(chain[-1]).__name__
    if isinstance(exc, TelegramError):
        return "bad_answer", _short(said or exc.message)
    return "bad_answer", f"{type(exc).__name__}: {_short(str(exc))}"  # PTB could not read the user it got


_NOT_JSON = "Invalid server response"


def _chain(exc: BaseException) -> list[BaseException]:
    chain = [exc]
    while chain[-1].__cause__ is not None and len(chain) < 10:
        chain.append(chain[-1].__cause__)
    return chain


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _QUOTE else text[: _QUOTE - 1] + "…"


class _OneLine(logging.Filter):
    """PTB logs a body that is not JSON with the decoder's traceback, and its rate limiter's last 429 with
    its own: the line says enough, and no traceback reaches an operator for a server's answer."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info or record.exc_text:
            record.exc_info, record.exc_text = None, None
            record.msg, record.args = _short(record.getMessage()), None
        return True


_FILTER = _OneLine()


def quiet_request_log() -> None:
    """Idempotent: install the one-line filter on PTB's request logger and on its rate limiter's (which logs
    its last 429 with the traceback of an exception it raises to the caller anyway)."""
    for name in ("telegram.request.BaseRequest", "telegram.ext.AIORateLimiter"):
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
