"""Configuration from the environment and a ``.env`` file.

Every variable is one field of :class:`Settings`, declared with :func:`var` (its name, default, parser and
a one-line description). README.md and ``.env.example`` list the same variables; a test keeps them in step.
A value that does not parse stops the start with a :class:`ConfigError` that names the variable.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.errors import ConfigError
from bot.i18n import LANGUAGES, Lang, Msg

BACKENDS: tuple[str, ...] = ("placeholder", "qianfan", "stability", "modelslab", "bedrock", "a1111")
LOG_LEVELS: tuple[str, ...] = ("DEBUG", "INFO", "WARNING", "ERROR")

Parser = Callable[[str, str], Any]  # (variable name, raw text) -> value


def var(name: str, default: str | None, doc: str, parse: Parser | None = None, *, secret: bool = False) -> Any:
    """Declare a field read from environment variable ``name``; ``default`` is raw text like the env's."""
    return field(
        default=None,
        metadata={"env": name, "default": default, "doc": doc, "parse": parse or _text, "secret": secret},
    )


# Parsers ---------------------------------------------------------------------------------------------


def _text(_name: str, raw: str) -> str:
    return raw.strip()


def _optional(parse: Parser) -> Parser:
    def parser(name: str, raw: str) -> Any:
        return parse(name, raw) if raw.strip() else None

    return parser


def choice(*choices: str, fold: Callable[[str], str] = str.lower) -> Parser:
    def parser(name: str, raw: str) -> str:
        value = fold(raw.strip())
        if value not in choices:
            raise _invalid(name, raw, Msg("config.expect.choice", {"choices": choices}))
        return value

    return parser


def integer(minimum: int = 0) -> Parser:
    def parser(name: str, raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise _invalid(name, raw, Msg("config.expect.int_min", {"min": minimum}))
        return value

    return parser


def number(minimum: float = 0.0) -> Parser:
    def parser(name: str, raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            value = float("nan")
        if not value >= minimum:  # also rejects nan
            raise _invalid(name, raw, Msg("config.expect.number_min", {"min": minimum}))
        return value

    return parser


def boolean(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise _invalid(name, raw, Msg("config.expect.bool"))


def timezone(name: str, raw: str) -> ZoneInfo:
    try:
        return ZoneInfo(raw.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise _invalid(name, raw, Msg("config.expect.timezone")) from None


def url(name: str, raw: str) -> str:
    value = raw.strip().rstrip("/")
    if not value.startswith(("http://", "https://")) or len(value) <= len("https://"):
        raise _invalid(name, raw, Msg("config.expect.url"))
    return value


def path(_name: str, raw: str) -> Path:
    return Path(raw.strip()).expanduser()


def _invalid(name: str, raw: str, expected: Msg) -> ConfigError:
    shown = raw if len(raw) <= 60 else raw[:59] + "…"
    return ConfigError("config_invalid", variable=name, value=shown, expected=expected)


# Settings --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    backend: str = var(
        "SDBOT_BACKEND",
        "placeholder",
        "Image service: placeholder (offline test images), qianfan, stability, modelslab, bedrock or a1111.",
        choice(*BACKENDS),
    )
    db: Path = var("SDBOT_DB", "./data/sdbot.db", "SQLite database file (created if missing).", path)
    lang: Lang = var("SDBOT_LANG", "en", "Default language for users who chose none: en or zh.", choice(*LANGUAGES))
    log_level: str = var(
        "SDBOT_LOG_LEVEL",
        "INFO",
        "Log level: DEBUG, INFO, WARNING or ERROR.",
        choice(*LOG_LEVELS, fold=str.upper),
    )
    # Which variables were actually set (by the environment or .env), e.g. to warn about the placeholder.
    explicit: frozenset[str] = field(default=frozenset(), metadata={})

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, env_file: str | Path | None = ".env") -> Settings:
        """Read every variable: the process environment wins over the ``.env`` file."""
        values: dict[str, str] = {}
        if env_file is not None and Path(env_file).is_file():
            from dotenv import dotenv_values

            values.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
        values.update(os.environ if environ is None else environ)
        kwargs: dict[str, Any] = {}
        explicit = set()
        for f in dataclasses.fields(cls):
            meta = f.metadata
            if "env" not in meta:
                continue
            raw = values.get(meta["env"])
            if raw is not None and raw.strip() != "":
                explicit.add(meta["env"])
            else:
                raw = meta["default"]
            kwargs[f.name] = None if raw is None else meta["parse"](meta["env"], raw)
        return cls(**kwargs, explicit=frozenset(explicit))

    def secrets(self) -> list[str]:
        """The values of every secret variable that is set."""
        return [
            str(getattr(self, f.name))
            for f in dataclasses.fields(self)
            if f.metadata.get("secret") and getattr(self, f.name)
        ]

    def require(self, *names: str, reason: Msg) -> None:
        """Fail with ``config_missing`` for the first of the variables ``names`` that is not set."""
        by_env = {f.metadata.get("env"): f.name for f in dataclasses.fields(self)}
        for name in names:
            if not getattr(self, by_env[name]):
                raise ConfigError("config_missing", variable=name, reason=reason)


def variables() -> list[dict[str, Any]]:
    """Every variable with its default and description, in declaration order (for docs and tests)."""
    return [
        {
            "name": f.metadata["env"],
            "default": f.metadata["default"],
            "doc": f.metadata["doc"],
            "secret": f.metadata["secret"],
        }
        for f in dataclasses.fields(Settings)
        if "env" in f.metadata
    ]
