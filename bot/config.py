"""Configuration from the environment and a ``.env`` file."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx

from bot.errors import ConfigError
from bot.messages.i18n import LANGUAGES, Lang, Msg

BACKENDS: tuple[str, ...] = (
    "placeholder",
    "qianfan",
    "stability",
    "modelslab",
    "bedrock",
    "a1111",
    "comfyui",
    "openai",
)
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


COUNT_MAX = 999_999_999  # limits and counts: far past any real use, and safe in SQLite's 64-bit integers
RETENTION_DAYS_MAX = 36_500  # a hundred years of jobs; far more and the cut-off day falls before the year 1
SECONDS_MAX = 315_360_000.0  # ten years: longer is a typo, and asyncio's timers overflow long before infinity


def integer(minimum: int = 0, maximum: int = COUNT_MAX) -> Parser:
    def parser(name: str, raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            value = minimum - 1
        if not minimum <= value <= maximum:
            raise _invalid(name, raw, Msg("config.expect.int_range", {"min": minimum, "max": maximum}))
        return value

    return parser


def number(minimum: float = 0.0, maximum: float = SECONDS_MAX) -> Parser:
    def parser(name: str, raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            value = float("nan")
        if not minimum <= value <= maximum:  # also rejects nan and infinities
            shown = {"min": _plain(minimum), "max": _plain(maximum)}
            raise _invalid(name, raw, Msg("config.expect.number_range", shown))
        return value

    return parser


def _plain(value: float) -> str:
    return repr(value).removesuffix(".0")


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
    """An ``http(s)://host[:port][/path]`` base URL, checked the way httpx will read it, so a bad port or host
    is a configuration error naming the variable, not an exception at the first request."""
    value = raw.strip().rstrip("/")
    try:
        parsed = httpx.URL(value)
        valid = (
            parsed.scheme in ("http", "https")
            and value.startswith(("http://", "https://"))
            and bool(parsed.host)
            and (parsed.port is None or 0 < parsed.port < 65536)
            and not parsed.query
            and not parsed.fragment
            and not any(ch.isspace() for ch in value)
        )
        httpx.Request("GET", parsed)  # the Host header httpx will send (an IDNA host that cannot be encoded...)
    except (httpx.InvalidURL, ValueError):  # idna's errors are ValueErrors (UnicodeError)
        valid = False
    if not valid:
        raise _invalid(name, _hide_userinfo_of_invalid(raw), Msg("config.expect.url"))
    return value


_OPTIONAL_URL = _optional(url)


def listen_address(name: str, raw: str) -> tuple[str, int]:
    """``host:port`` to listen on; an empty host (``:9090``) is every address."""
    host, _, port = raw.strip().rpartition(":")
    host = host.strip("[]")
    if not port.isdigit() or not 0 < int(port) < 65536 or any(ch.isspace() for ch in host):
        raise _invalid(name, raw, Msg("config.expect.listen"))
    return host or "0.0.0.0", int(port)


def redact_url(text: str) -> str:
    """``text`` with a URL's ``user:password@`` (the whole userinfo: a user name can be a token too) shown
    as ``***@``, for anything shown or logged."""
    scheme, sep, rest = text.partition("://")
    if not sep:
        return text
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    at = rest.rfind("@", 0, end)
    return f"{scheme}://***@{rest[at + 1 :]}" if at >= 0 else text


def _hide_userinfo_of_invalid(raw: str) -> str:
    """A URL that failed to parse, shown in its error: everything before its last ``@`` may be a password,
    even one holding a ``/``, ``?`` or ``#`` that ended the authority early."""
    scheme, sep, rest = raw.strip().partition("://")
    if not sep or "@" not in rest:
        return raw
    return f"{scheme}://***@{rest.rpartition('@')[2]}"


def url_secrets(value: str) -> list[str]:
    """The parts of a URL setting's ``user:password@`` to keep out of every message and log: the user name,
    the password and the whole userinfo, as written and percent-decoded."""
    parsed = httpx.URL(value)
    raw = parsed.userinfo.decode("ascii", "replace")
    parts = {raw, *raw.split(":", 1), parsed.username, parsed.password}
    return sorted(part for part in parts if part)


def admin_list(name: str, raw: str) -> frozenset[str]:
    """``telegram:123,discord:456`` -> {"telegram:123", "discord:456"}."""
    out = set()
    for item in raw.replace(" ", "").split(","):
        if not item:
            continue
        platform, _, user = item.partition(":")
        if platform.lower() not in ("telegram", "discord") or not user.isdigit():
            raise _invalid(name, raw, Msg("config.expect.admins"))
        out.add(f"{platform.lower()}:{user}")
    return frozenset(out)


def service_names(name: str, raw: str) -> tuple[str, ...]:
    """``gpu1,gpu2,paid`` -> the names, lowercase: letters, digits and ``_``, starting with a letter, no repeats."""
    names = [item.strip().lower() for item in raw.split(",") if item.strip()]
    valid = all(item[0].isalpha() and item.replace("_", "").isalnum() and item.isascii() for item in names)
    if not names or not valid or len(set(names)) != len(names):
        raise _invalid(name, raw, Msg("config.expect.service_names"))
    return tuple(names)


def sizes(name: str, raw: str) -> tuple[str, ...]:
    """``1024x1024,1536x1024`` -> the sizes, each ``WIDTHxHEIGHT`` with sides from 64 to 4096."""
    out = []
    for item in raw.replace(" ", "").lower().split(","):
        if not item:
            continue
        width, sep, height = item.partition("x")
        if not (sep and width.isdigit() and height.isdigit() and all(64 <= int(s) <= 4096 for s in (width, height))):
            raise _invalid(name, raw, Msg("config.expect.sizes"))
        out.append(f"{int(width)}x{int(height)}")
    if not out:
        raise _invalid(name, raw, Msg("config.expect.sizes"))
    return tuple(dict.fromkeys(out))


def path(_name: str, raw: str) -> Path:
    return Path(raw.strip()).expanduser()


DATABASE_SCHEMES = ("postgresql://", "postgres://")


def database(name: str, raw: str) -> Path | str:
    """A SQLite file's path, or a PostgreSQL URL (``postgresql://user:password@host:port/dbname``), kept as
    written: asyncpg reads it, and its password is a secret."""
    value = raw.strip()
    if not value.lower().startswith(DATABASE_SCHEMES):
        return path(name, raw)
    try:
        parsed = httpx.URL(value)
        valid = bool(parsed.host) and parsed.path.strip("/") != "" and not any(c.isspace() for c in value)
    except (httpx.InvalidURL, ValueError):
        valid = False
    if not valid:
        raise _invalid(name, _hide_userinfo_of_invalid(raw), Msg("config.expect.database"))
    return value


def is_database_url(value: object) -> bool:
    """Whether an ``SDBOT_DB`` value names a PostgreSQL database (else it is a SQLite file)."""
    return isinstance(value, str) and value.lower().startswith(DATABASE_SCHEMES)


def shown_database(value: Path | str) -> str:
    """``SDBOT_DB`` as messages and logs show it: a URL without its password."""
    return redact_url(value) if isinstance(value, str) else str(value)


def _invalid(name: str, raw: str, expected: Msg) -> ConfigError:
    shown = raw if len(raw) <= 60 else raw[:59] + "…"
    return ConfigError("config_invalid", variable=name, value=shown, expected=expected)


# Settings --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    backend: str = var(
        "SDBOT_BACKEND",
        "placeholder",
        "Image service: placeholder (offline test images), qianfan, stability, modelslab, bedrock, a1111, comfyui or "
        "openai (any service that follows OpenAI's images API).",
        choice(*BACKENDS),
    )
    backends: tuple[str, ...] = var(
        "SDBOT_BACKENDS",
        None,
        "Several image services as one pool, by names you choose, e.g. gpu1,gpu2,paid (unset: SDBOT_BACKEND alone). "
        "Each member reads every variable with its name as a prefix first: GPU1_SDBOT_BACKEND=comfyui, "
        "GPU1_COMFYUI_URL=..., GPU1_SDBOT_BACKEND_CONCURRENCY=1; a member named like a service (comfyui, stability) "
        "is that service.",
        _optional(service_names),
    )
    db: Path | str = var(
        "SDBOT_DB",
        "./data/sdbot.db",
        "SQLite database file (created if missing), or a PostgreSQL URL: postgresql://user:password@host:5432/sdbot.",
        database,
    )
    lang: Lang = var("SDBOT_LANG", "en", "Default language for users who chose none: en or zh.", choice(*LANGUAGES))
    log_level: str = var(
        "SDBOT_LOG_LEVEL",
        "INFO",
        "Log level: DEBUG, INFO, WARNING or ERROR.",
        choice(*LOG_LEVELS, fold=str.upper),
    )
    log_format: str = var(
        "SDBOT_LOG_FORMAT",
        "text",
        "Log lines as text, or json (one JSON object a line, for log collectors).",
        choice("text", "json"),
    )
    http_listen: tuple[str, int] | None = var(
        "SDBOT_HTTP_LISTEN",
        None,
        "host:port where each process serves /healthz and /metrics (Prometheus), e.g. 127.0.0.1:9090 (unset: none).",
        _optional(listen_address),
    )
    # Image services (issue: backends) --------------------------------------------------------------
    backend_timeout: float = var(
        "SDBOT_BACKEND_TIMEOUT",
        "120",
        "Seconds an image service has to send its whole answer to one request "
        "(a slower or trickling answer is cut off, counts as an outage, and is not retried).",
        number(1, 86400),
    )
    backend_connect_timeout: float = var(
        "SDBOT_BACKEND_CONNECT_TIMEOUT",
        "10",
        "Seconds to wait for a connection to an image service.",
        number(0.1, 3600),
    )
    backend_retries: int = var(
        "SDBOT_BACKEND_RETRIES", "3", "Retries of a transient image-service failure (with backoff).", integer(0, 100)
    )
    qianfan_api_key: str | None = var("QIANFAN_API_KEY", None, "Baidu Qianfan API Key (client_id).", secret=True)
    qianfan_secret_key: str | None = var(
        "QIANFAN_SECRET_KEY", None, "Baidu Qianfan Secret Key (client_secret).", secret=True
    )
    qianfan_base_url: str | None = var(
        "QIANFAN_BASE_URL",
        None,
        "Qianfan API base URL (unset: https://qianfan.baidubce.com for a v2 API key, https://aip.baidubce.com for "
        "an API Key and Secret Key pair).",
        _OPTIONAL_URL,
    )
    qianfan_model: str = var(
        "QIANFAN_MODEL",
        "irag-1.0",
        "Qianfan v2 model (with a bce-v3/ API key): irag-1.0, flux.1-schnell, or a service you deployed there.",
    )
    stability_api_key: str | None = var("STABILITY_API_KEY", None, "Stability AI API key.", secret=True)
    stability_base_url: str = var("STABILITY_BASE_URL", "https://api.stability.ai", "Stability AI API base URL.", url)
    stability_model: str | None = var(
        "STABILITY_MODEL",
        None,
        "Stability AI v2beta model: core (the default), ultra, sd3.5-large, sd3.5-large-turbo, sd3.5-medium or "
        "sd3.5-flash.",
        _optional(choice("core", "ultra", "sd3.5-large", "sd3.5-large-turbo", "sd3.5-medium", "sd3.5-flash")),
    )
    stability_engine: str | None = var(
        "STABILITY_ENGINE",
        None,
        "Stability AI v1 engine id, e.g. stable-diffusion-xl-1024-v1-0: set it (and not STABILITY_MODEL) to keep "
        "the v1 API.",
    )
    stability_upscale: str = var(
        "STABILITY_UPSCALE",
        "fast",
        "Stability AI v2beta upscaler behind the Upscale button: fast (4x, 2 credits; pictures up to 1536 px a side "
        "and 1 megapixel, so not Stable Image Core's), conservative (about 4 megapixels with the prompt, 40 credits), "
        "or off.",
        choice("fast", "conservative", "off"),
    )
    modelslab_api_key: str | None = var("MODELSLAB_API_KEY", None, "ModelsLab API key.", secret=True)
    modelslab_base_url: str = var("MODELSLAB_BASE_URL", "https://modelslab.com", "ModelsLab API base URL.", url)
    modelslab_poll_deadline: float = var(
        "MODELSLAB_POLL_DEADLINE",
        "300",
        "Seconds to keep polling a ModelsLab job that is still processing.",
        number(1, 86400),
    )
    modelslab_model_id: str | None = var(
        "MODELSLAB_MODEL_ID", None, "ModelsLab model_id to draw with (unset: the endpoint's default model)."
    )
    modelslab_max_download: int = var(
        "MODELSLAB_MAX_DOWNLOAD",
        "20971520",
        "Largest image (bytes) downloaded from a ModelsLab output URL.",
        integer(1, 1 << 31),
    )
    bedrock_model_id: str = var(
        "BEDROCK_MODEL_ID",
        "stability.sd3-5-large-v1:0",
        "AWS Bedrock model: stability.sd3-5-large-v1:0, stability.stable-image-core-v1:1, "
        "stability.stable-image-ultra-v1:1 (or an inference profile such as us.stability...), or "
        "stability.stable-diffusion-xl-v1 where an account still has it.",
    )
    aws_bearer_token_bedrock: str | None = var(
        "AWS_BEARER_TOKEN_BEDROCK",
        None,
        "A Bedrock API key, used instead of AWS credentials (no botocore needed).",
        secret=True,
    )
    aws_region: str | None = var("AWS_REGION", None, "AWS region for Bedrock, e.g. us-east-1.")
    aws_access_key_id: str | None = var(
        "AWS_ACCESS_KEY_ID", None, "AWS access key id (or any standard AWS credential source).", secret=True
    )
    aws_secret_access_key: str | None = var("AWS_SECRET_ACCESS_KEY", None, "AWS secret access key.", secret=True)
    aws_session_token: str | None = var(
        "AWS_SESSION_TOKEN", None, "AWS session token (temporary credentials).", secret=True
    )
    bedrock_upscale_model_id: str | None = var(
        "BEDROCK_UPSCALE_MODEL_ID",
        None,
        "Bedrock Stability Image Services upscaler behind the Upscale button, where subscribed: "
        "stability.stable-fast-upscale-v1:0 (4x; pictures up to 1536 px a side and 1 megapixel) or "
        "stability.stable-conservative-upscale-v1:0 (about 4 megapixels, with the prompt), or an inference profile "
        "such as us.stability.stable-fast-upscale-v1:0 (us-east-1 needs one); unset: no Upscale button.",
        _optional(_text),
    )
    bedrock_endpoint_url: str | None = var(
        "BEDROCK_ENDPOINT_URL", None, "Override the Bedrock runtime endpoint (VPC endpoints, tests).", _OPTIONAL_URL
    )
    openai_api_key: str | None = var(
        "OPENAI_API_KEY", None, "API key of the OpenAI-compatible images service (SDBOT_BACKEND=openai).", secret=True
    )
    openai_base_url: str = var(
        "OPENAI_BASE_URL",
        "https://api.openai.com/v1",
        "Base URL of the OpenAI-compatible service, up to /v1 (DeepInfra: https://api.deepinfra.com/v1/openai).",
        url,
    )
    openai_model: str = var("OPENAI_MODEL", "gpt-image-1.5", "Model of the OpenAI-compatible images service.")
    openai_sizes: tuple[str, ...] = var(
        "OPENAI_SIZES",
        None,
        "Sizes the OpenAI-compatible model draws, e.g. 1024x1024,1536x1024 (unset: by the model; gpt-image: "
        "1024x1024,1536x1024,1024x1536; other models: every /draw size); other sizes are drawn at the nearest ratio.",
        _optional(sizes),
    )
    max_download: int = var(
        "SDBOT_MAX_DOWNLOAD",
        "20971520",
        "Largest picture (bytes) downloaded from a link an image service answers with (Qianfan v2, OpenAI-compatible "
        "services, ComfyUI).",
        integer(1, 1 << 31),
    )
    comfyui_url: str | None = var(
        "COMFYUI_URL",
        None,
        "ComfyUI server base URL, e.g. http://127.0.0.1:8188 (a user:password@ for a proxy in front is a secret).",
        _OPTIONAL_URL,
    )
    comfyui_workflow: Path | None = var(
        "COMFYUI_WORKFLOW",
        None,
        "An API-format workflow file (ComfyUI: Workflow > Export (API)) to draw with; unset: the shipped SDXL "
        "text-to-image workflow.",
        _optional(path),
    )
    comfyui_bindings: str | None = var(
        "COMFYUI_BINDINGS",
        None,
        "Which input of COMFYUI_WORKFLOW takes each value, as role=node.input pairs, e.g. "
        "prompt=6.text,negative=7.text,seed=3.seed,steps=3.steps,cfg=3.cfg,sampler=3.sampler_name,"
        "scheduler=3.scheduler,width=5.width,height=5.height,batch=5.batch_size (unset: found from the one KSampler); "
        "image=node.input and denoise=node.input name COMFYUI_IMG2IMG_WORKFLOW's picture and strength, the other roles "
        "then naming the same inputs in both files (width, height and batch only where that node is).",
    )
    comfyui_checkpoint: str | None = var(
        "COMFYUI_CHECKPOINT",
        None,
        "Checkpoint file the workflow loads, e.g. sd_xl_base_1.0.safetensors (unset: the workflow's own).",
    )
    comfyui_img2img_workflow: Path | None = var(
        "COMFYUI_IMG2IMG_WORKFLOW",
        None,
        "An API-format image-to-image workflow file: its one LoadImage gets the picture sent with /draw, its "
        "KSampler's denoise the --strength (default 0.6); unset: the shipped workflow with its empty latent replaced "
        "by LoadImage -> VAEEncode, or no drawing from pictures with your own COMFYUI_WORKFLOW.",
        _optional(path),
    )
    comfyui_upscale_model: str | None = var(
        "COMFYUI_UPSCALE_MODEL",
        None,
        "Upscale model file in ComfyUI's models/upscale_models, e.g. RealESRGAN_x2.pth: offers the Upscale button "
        "(the picture through the model, then resized to exactly twice its sides); unset: no Upscale button.",
    )
    a1111_url: str | None = var(
        "A1111_URL",
        None,
        "AUTOMATIC1111 web UI base URL (started with --api), e.g. http://127.0.0.1:7860.",
        _OPTIONAL_URL,
    )
    a1111_auth: str | None = var(
        "A1111_AUTH", None, "A1111 --api-auth credentials as user:pass (optional).", secret=True
    )
    a1111_upscaler: str = var(
        "A1111_UPSCALER",
        "R-ESRGAN 4x+",
        "A1111 upscaler behind the Upscale button, a name from the server's /sdapi/v1/upscalers (e.g. R-ESRGAN 4x+, "
        "ESRGAN_4x, Lanczos): the picture through /sdapi/v1/extra-single-image at twice its sides; off: no Upscale "
        "button (nor when the server lacks it: sdbot check says so).",
    )

    # Jobs, quotas and scheduling (issue: jobs) -----------------------------------------------------
    daily_images: int = var(
        "SDBOT_DAILY_IMAGES", "20", "Images per user per day (--n 4 costs 4; 0 = no limit).", integer(0)
    )
    rate_per_minute: int = var(
        "SDBOT_RATE_PER_MINUTE", "3", "/draw requests per user per minute (0 = no limit).", integer(0)
    )
    max_pending: int = var("SDBOT_MAX_PENDING", "2", "Queued plus running jobs per user.", integer(1))
    chat_daily_images: int = var(
        "SDBOT_CHAT_DAILY_IMAGES", "0", "Images per group chat / Discord server per day (0 = no cap).", integer(0)
    )
    quota_tz: ZoneInfo = var("SDBOT_QUOTA_TZ", "UTC", "Time zone where a quota day starts.", timezone)
    admins: frozenset[str] = var(
        "SDBOT_ADMINS", "", "Admins, exempt from limits and allowed /admin: telegram:123,discord:456.", admin_list
    )
    backend_concurrency: int = var(
        "SDBOT_BACKEND_CONCURRENCY", "2", "Generations running at once on the image service.", integer(1, 1000)
    )
    job_max_age: float = var(
        "SDBOT_JOB_MAX_AGE",
        "3600",
        "Seconds after which an unfinished job found at start (or, with PostgreSQL, taken over from a process that "
        "died) is failed and refunded (0 = never).",
        number(0),
    )
    job_lease: float = var(
        "SDBOT_JOB_LEASE",
        "30",
        "With PostgreSQL: seconds a process holds a running job without renewing it; a process dead or paused "
        "that long loses its jobs to the others.",
        number(3, 3600),
    )
    job_retention_days: int = var(
        "SDBOT_JOB_RETENTION_DAYS",
        "90",
        "Days finished jobs (and their daily usage counters) are kept before they are deleted (0 = forever).",
        integer(0, RETENTION_DAYS_MAX),
    )
    refund_filtered: bool = var(
        "SDBOT_REFUND_FILTERED",
        "1",
        "Refund images the provider's content filter blocked (1) or charge them (0).",
        boolean,
    )
    picture_max_bytes: int = var(
        "SDBOT_PICTURE_MAX_BYTES",
        "10485760",
        "Largest picture (bytes) users may draw from; larger ones are refused before they are downloaded. Telegram "
        "lets bots download at most 20 MB.",
        integer(1024, 1 << 30),
    )
    nsfw_channels: str = var(
        "SDBOT_NSFW_CHANNELS",
        "spoiler",
        "What Discord's age-restricted channels do with pictures the image service's filter flagged: withhold, "
        "spoiler (under Discord's spoiler cover) or show; other channels never show them.",
        choice("withhold", "spoiler", "show"),
    )
    upscale_cost: int = var(
        "SDBOT_UPSCALE_COST",
        "1",
        "Images charged for an Upscale (2x) of a picture, against the same quotas as /draw (0: free).",
        integer(0, 100),
    )
    variation_strength: float = var(
        "SDBOT_VARIATION_STRENGTH",
        "0.35",
        "How far the Variations button moves from the picture (0-1: low keeps it close), with a new seed.",
        number(0.05, 1.0),
    )
    breaker_failures: int = var(
        "SDBOT_BREAKER_FAILURES",
        "5",
        "Consecutive outage failures (unreachable, timeout, bad image) that mark the image service down (0 = never).",
        integer(0),
    )
    breaker_cooldown: float = var(
        "SDBOT_BREAKER_COOLDOWN",
        "30",
        "Seconds the image service stays marked down before one trial job may try it again.",
        number(0.1, 86400),
    )

    # Telegram (issue: Telegram adapter) ------------------------------------------------------------
    telegram_bot_token: str | None = var("TELEGRAM_BOT_TOKEN", None, "Telegram bot token from @BotFather.", secret=True)
    telegram_api_url: str = var(
        "TELEGRAM_API_URL", "https://api.telegram.org", "Bot API server (set for a self-hosted one).", url
    )
    telegram_webhook_url: str | None = var(
        "TELEGRAM_WEBHOOK_URL", None, "Public HTTPS URL for webhook mode (unset = long polling).", _OPTIONAL_URL
    )
    telegram_webhook_listen: str = var("TELEGRAM_WEBHOOK_LISTEN", "0.0.0.0", "Webhook mode: address to listen on.")
    telegram_webhook_port: int = var(
        "TELEGRAM_WEBHOOK_PORT", "8443", "Webhook mode: port to listen on.", integer(1, 65535)
    )
    telegram_webhook_secret: str | None = var(
        "TELEGRAM_WEBHOOK_SECRET", None, "Webhook mode: secret token Telegram sends with each update.", secret=True
    )
    telegram_upload_timeout: float = var(
        "TELEGRAM_UPLOAD_TIMEOUT",
        "120",
        "Seconds a picture upload to Telegram may take to be sent and confirmed (large albums on slow links).",
        number(5, 3600),
    )
    telegram_send_originals: bool = var(
        "TELEGRAM_SEND_ORIGINALS",
        "0",
        "Send images Telegram refuses as photos as documents (1) instead of re-encoding.",
        boolean,
    )

    # Discord (issue: Discord adapter) --------------------------------------------------------------
    discord_bot_token: str | None = var("DISCORD_BOT_TOKEN", None, "Discord bot token.", secret=True)
    discord_guild_ids: str = var(
        "DISCORD_GUILD_IDS", "", "Comma-separated server ids to sync slash commands to instantly (unset = global)."
    )
    discord_shard_count: str = var(
        "DISCORD_SHARD_COUNT",
        "",
        "Shards of the Discord bot across all processes (unset: no sharding, one process answers every server).",
    )
    discord_shard_ids: str = var(
        "DISCORD_SHARD_IDS",
        "",
        "This process's shards, comma-separated, from 0 to DISCORD_SHARD_COUNT-1 (unset: all of them).",
    )

    # Which variables were actually set (by the environment or .env), e.g. to warn about the placeholder.
    explicit: frozenset[str] = field(default=frozenset(), metadata={})
    # Every variable as read (environment over .env): a pool's members read theirs with their own prefix.
    environ: Mapping[str, str] = field(default_factory=dict, metadata={}, repr=False, compare=False)

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
        return cls(**kwargs, explicit=frozenset(explicit), environ=values)

    def secrets(self) -> list[str]:
        """The values of every secret variable that is set, and the userinfo of every URL setting that has
        one (``http://user:password@host``: user, password, both)."""
        values = [
            str(getattr(self, f.name))
            for f in dataclasses.fields(self)
            if f.metadata.get("secret") and getattr(self, f.name)
        ]
        for f in dataclasses.fields(self):
            if f.metadata.get("parse") in (url, _OPTIONAL_URL, database) and isinstance(getattr(self, f.name), str):
                values.extend(url_secrets(getattr(self, f.name)))
        return values

    def require(self, *names: str, reason: Msg) -> None:
        """Fail with ``config_missing`` naming every one of the variables ``names`` that is not set."""
        by_env = {f.metadata.get("env"): f.name for f in dataclasses.fields(self)}
        missing = [name for name in names if not getattr(self, by_env[name])]
        if missing:
            raise ConfigError("config_missing", variable=missing, reason=reason)


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
