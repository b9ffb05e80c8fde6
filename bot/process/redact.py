"""Keep secrets out of every log line, whichever library writes it."""

from __future__ import annotations

import logging
import re
import threading
import traceback

from pythonjsonlogger.json import JsonFormatter

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"(?i)\b(access_token|client_secret|client_id|api_key|apikey|secret|token|key)=([^&\s'\"<>]+)"),
        r"\1=***",
    ),
    (
        re.compile(r"(?i)\b(authorization|x-amz-security-token)(['\"]?\s*[:=]\s*['\"]?)[^'\"\r\n,}]+"),
        r"\1\2***",
    ),
    (re.compile(r"(?i)(\"(?:key|api_key|access_token|secret)\"\s*:\s*\")[^\"]*"), r"\1***"),
    (re.compile(r"\bbot\d{3,}:[A-Za-z0-9_-]{10,}"), "bot***"),
    # A URL's user:password@ (a proxy, a self-hosted server behind basic auth), however short: the whole
    # userinfo, since a user name alone can be a token (https://<token>@host).
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s]+@"), r"\1***@"),
    # AWS SigV4: the signature (Authorization header, presigned query, and botocore.auth's DEBUG line
    # "Signature:\n<hex>") and the access key id the credential scope names.
    (re.compile(r"(?i)\b(signature|x-amz-signature)(\s*[:=]\s*)[0-9a-f]{16,}"), r"\1\2***"),
    (re.compile(r"(?i)\b(credential|x-amz-credential)=[^/\s,&]+"), r"\1=***"),
    # Discord interaction tokens travel in URL paths (callbacks, follow-ups, edits) that discord.py logs at
    # DEBUG; each is short-lived, so matching them beats registering thousands of secrets.
    (re.compile(r"(/(?:webhooks|interactions)/\d+/)[\w.-]{20,}"), r"\1***"),
    # ... and in gateway payloads (discord.py's DEBUG "WebSocket Event") and stored job routes (SQL parameters
    # at aiosqlite's DEBUG): {'token': '...'} / {"token":"..."}.
    (re.compile(r"""(['"]token['"]\s*:\s*['"])[^'"]+"""), r"\1***"),
)

_lock = threading.Lock()
_secrets: set[str] = set()
_installed = False


def register(*secrets: str | None) -> None:
    """Remember values that must never be printed (API keys, tokens fetched at run time...)."""
    with _lock:
        # Very short values would redact ordinary words; real credentials are long.
        _secrets.update(s for s in secrets if s and len(s) >= 6)


def scrub(text: str) -> str:
    """``text`` with every registered secret and secret-shaped parameter replaced by ``***``."""
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, "***")
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def install() -> None:
    """Scrub every log record at creation. Idempotent."""
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            record.msg = scrub(record.getMessage())
            record.args = None
            if record.exc_info and record.exc_info[1] is not None:
                record.exc_text = scrub("".join(traceback.format_exception(*record.exc_info)).rstrip())
                record.exc_info = None
            if record.stack_info:
                record.stack_info = scrub(record.stack_info)
        except Exception:  # a broken __str__ in someone's log args must not take logging down
            record.msg, record.args = "<unprintable log message>", None
        return record

    logging.setLogRecordFactory(factory)


def configure_logging(level: str, form: str = "text") -> None:
    """Log to stderr at ``level``, as text lines or (``json``) one JSON object a line; secrets scrubbed either way."""
    install()
    if form == "json":
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        logging.basicConfig(level=level, handlers=[handler])
    else:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(level)
    # httpx announces every request at INFO; that is noise at our default level.
    if logging.getLevelName(level) > logging.DEBUG:
        logging.getLogger("httpx").setLevel(logging.WARNING)
