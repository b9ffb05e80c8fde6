"""deploy/: what the compose file, the proxy and the systemd unit say agrees with the bot they run."""

from __future__ import annotations

import re
from pathlib import Path

from bot.config import variables

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
KNOWN = {var["name"] for var in variables()}


def test_the_compose_file_sets_only_variables_the_bot_reads_and_runs_replicas_on_postgresql() -> None:
    compose = (DEPLOY / "docker-compose.yml").read_text(encoding="utf-8")
    named = set(re.findall(r"^\s+((?:SDBOT|TELEGRAM|DISCORD)_[A-Z_]+):", compose, re.MULTILINE))
    assert named and named <= KNOWN, named - KNOWN
    assert re.search(r"SDBOT_DB: postgresql://", compose)  # replicas share PostgreSQL, never a SQLite file
    assert re.search(r"replicas: [2-9]", compose)
    assert "/healthz" in compose and "SDBOT_HTTP_LISTEN" in named


def test_the_proxy_tries_another_replica_when_one_refuses_or_is_gone() -> None:
    nginx = (DEPLOY / "nginx.conf").read_text(encoding="utf-8")
    retry = re.search(r"proxy_next_upstream ([^;]+);", nginx)
    # 503 is what a replica answers an update it could not store (adapters/telegram/durable.py).
    assert retry is not None and {"error", "http_503"} <= set(retry.group(1).split())
    assert "TELEGRAM_WEBHOOK_PORT" in (DEPLOY / "docker-compose.yml").read_text(encoding="utf-8")
    assert re.search(r"server bot:8443", nginx)


def test_the_systemd_unit_runs_the_cli_and_does_not_restart_a_configuration_error() -> None:
    unit = (DEPLOY / "sdbot.service").read_text(encoding="utf-8")
    assert re.search(r"^ExecStart=\S+/sdbot run$", unit, re.MULTILINE)
    assert "RestartPreventExitStatus=3" in unit  # bot/cli/exit_codes.py: EXIT_CONFIG
    from bot.cli.exit_codes import EXIT_CONFIG

    assert EXIT_CONFIG == 3
