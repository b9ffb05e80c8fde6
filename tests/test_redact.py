"""Secrets never reach a log line, whichever logger writes it, including exception texts."""

from __future__ import annotations

import logging

import pytest

from bot.process import redact


@pytest.fixture(autouse=True)
def _installed() -> None:
    redact.install()


def test_registered_secrets_and_secret_shaped_parameters_are_scrubbed(caplog: pytest.LogCaptureFixture) -> None:
    redact.register("sk-registered-secret-123")
    caplog.set_level(logging.DEBUG)
    log = logging.getLogger("httpx")
    log.info('HTTP Request: POST %s "HTTP/1.1 200 OK"', "https://aip.example/x?access_token=24.abcdef&foo=1")
    log.info("key is %s", "sk-registered-secret-123")
    log.debug("headers: {'Authorization': 'Bearer abc.def'}")
    logging.getLogger("telegram.ext").warning("POST https://api.telegram.org/bot123456:AAH-secret_token_value/getMe")
    logging.getLogger("x").info('body {"key": "modelslab-key", "prompt": "cat"}')
    try:
        raise ValueError("failed for https://h/?client_secret=SK-999&client_id=AK-1")
    except ValueError:
        logging.getLogger("y").exception("boom")
    text = caplog.text
    for secret in ("24.abcdef", "sk-registered-secret-123", "abc.def", "AAH-secret_token_value", "modelslab-key",
                   "SK-999", "AK-1"):  # fmt: skip
        assert secret not in text, secret
    assert "access_token=***" in text and "foo=1" in text and '"prompt": "cat"' in text


def test_short_values_are_not_registered() -> None:
    redact.register("ab", None, "")
    assert redact.scrub("abc ab") == "abc ab"
