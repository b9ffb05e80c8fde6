"""The ``sdbot`` command line (also ``python -m bot``).

Exit codes: 0 success; 1 the generation or service failed; 2 invalid input; 3 invalid configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import importlib
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from bot import __version__
from bot.backends import create_backend
from bot.cli import admin as cli_admin
from bot.cli import migrate as cli_migrate
from bot.cli.diagnose import operator_detail
from bot.cli.exit_codes import EXIT_CONFIG, EXIT_FAILED, EXIT_INVALID, EXIT_OK
from bot.config import Settings, is_database_url
from bot.draw import picture as pictures
from bot.draw.capabilities import Capabilities
from bot.draw.grammar import render_value
from bot.draw.options import shown
from bot.draw.request import DrawRequest
from bot.draw.validation import parse_request
from bot.errors import BackendError, ConfigError, DrawError, SdbotError
from bot.jobs.generation import generate, user_key
from bot.messages.i18n import LANGUAGES, Lang, Msg, render_error, resolve_language, t
from bot.moderation.rules import Rule, breaks
from bot.process import redact
from bot.storage import open_storage

DRAW_USAGE = "sdbot draw [--lang en|zh] [--dry-run] [--json] [--out DIR] [--image FILE] [--strict] TEXT"


class Parser(argparse.ArgumentParser):
    """argparse, except that ``sdbot draw --json`` reports argparse's own errors (``--lang fr``, ``--out``
    without a folder) as the JSON error object too: a script reading stdout gets JSON on every path."""

    json_errors = False

    def error(self, message: str) -> NoReturn:
        if not self.json_errors:
            super().error(message)
        lang = resolve_language(None, os.environ.get("SDBOT_LANG"), "en")
        named = re.match(r"argument --([\w-]+)", message)
        error = SdbotError("command_usage", option=named.group(1) if named else None, usage=DRAW_USAGE)
        document = {**error.as_dict(), "message": render_error(error, lang), "detail": message}
        print(json.dumps({"error": document}, ensure_ascii=False))
        raise SystemExit(EXIT_INVALID)


def build_parser(*, json_errors: bool = False) -> argparse.ArgumentParser:
    """``json_errors``: ``sdbot draw --json`` was asked for (see :class:`Parser`)."""
    parser = Parser(prog="sdbot", description="Stable Diffusion images from chat.")
    parser.add_argument("--version", action="version", version=f"sdbot {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    draw = sub.add_parser("draw", help="generate from the terminal through the same core the bots use")
    draw.add_argument("--lang", choices=LANGUAGES, help="language of messages (default SDBOT_LANG)")
    draw.add_argument("--dry-run", action="store_true", help="validate only; print the request")
    draw.add_argument("--json", action="store_true", help="print one JSON object")
    draw.add_argument("--out", type=Path, default=Path("out"), help="where images are written (default ./out)")
    draw.add_argument("--image", type=Path, help="a picture (JPEG, PNG, WebP) to draw from, with --strength 0-1")
    draw.add_argument("--strict", action="store_true", help="apply the block list's strict rules too")
    draw.add_argument("text", nargs="*", help="what you would type after /draw (after sdbot's own options)")
    draw.set_defaults(handler=cmd_draw)
    if isinstance(draw, Parser):
        draw.json_errors = json_errors

    run = sub.add_parser("run", help="start every chat adapter whose token is configured")
    run.set_defaults(handler=cmd_run)

    check = sub.add_parser("check", help="validate the configuration and prove the image service credentials work")
    check.add_argument("--lang", choices=LANGUAGES, help="language of messages (default SDBOT_LANG)")
    check.set_defaults(handler=cmd_check)

    # The platforms a quota target may name: the installed adapters (the CLI is the composition root).
    cli_admin.add_parsers(sub, importlib.import_module("adapters.runner").ADAPTERS)  # quota, stats, prune
    cli_migrate.add_parser(sub)
    return parser


# sdbot draw's own options; everything from the first other word on is /draw text, "--n 2" included.
_DRAW_FLAGS = {"--lang": 1, "--out": 1, "--image": 1, "--strict": 0, "--dry-run": 0, "--json": 0, "-h": 0, "--help": 0}


def split_draw_argv(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split ``draw ...`` arguments into sdbot's options and the /draw text words. A ``--`` (POSIX) ends
    sdbot's options and is not part of the text."""
    i = 1
    while i < len(argv):
        if argv[i] == "--":
            return list(argv[:i]), list(argv[i + 1 :])
        name, has_value, _ = argv[i].partition("=")
        if name not in _DRAW_FLAGS:
            break
        i += 1 + (0 if has_value else _DRAW_FLAGS[name])
    return list(argv[:i]), list(argv[i:])


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    text: list[str] | None = None
    if argv and argv[0] == "draw":
        argv, text = split_draw_argv(argv)
    args = build_parser(json_errors=text is not None and "--json" in argv).parse_args(argv)
    if text is not None:
        args.text = text
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        lang = resolve_language(getattr(args, "lang", None), os.environ.get("SDBOT_LANG"), "en")
        return _fail(args, lang, exc, EXIT_CONFIG)  # as JSON too, when --json asked for it
    redact.register(*settings.secrets())
    redact.configure_logging(settings.log_level, settings.log_format)
    return int(asyncio.run(args.handler(args, settings)))


def join_argv(words: Sequence[str]) -> str:
    """Rebuild /draw text from shell words. A word is text as typed after /draw (``"cat --n 2"`` as one
    argument is parsed), except an option's value the shell unquoted (``--neg "a b"``), which is quoted again."""
    out = []
    for i, word in enumerate(words):
        after_option = i > 0 and _is_option(words[i - 1]) and "=" not in words[i - 1]
        out.append(render_value(word) if after_option and not _is_option(word) and " " in word else word)
    return " ".join(out)


def _is_option(word: str) -> bool:
    return word.startswith(("-", "—", "–", "－"))


async def cmd_draw(args: argparse.Namespace, settings: Settings) -> int:
    lang: Lang = resolve_language(args.lang, None, settings.lang)
    text = join_argv(args.text)
    try:
        backend = create_backend(settings)
    except ConfigError as exc:
        return _fail(args, lang, exc, EXIT_CONFIG)
    async with backend:
        try:
            caps = await backend.capabilities()
            if args.image is None:
                request = parse_request(text, caps)
            else:
                request = await _from_picture(args.image, text, caps, settings.picture_max_bytes)
            rules = await _block_list(settings)
            if breaks(request.prompt, request.negative_prompt, rules, strict=args.strict) is not None:
                raise DrawError("prompt_blocked", option="prompt")
        except ConfigError as exc:  # the database holding the block list cannot be read
            return _fail(args, lang, exc, EXIT_CONFIG)
        except DrawError as exc:
            own = f"--{exc.option}" if exc.code == "unknown_option" else None
            hint = t(lang, "cli.own_options_first", option=own) if own in _DRAW_FLAGS else None
            return _fail(args, lang, exc, EXIT_INVALID, hint=hint)
        except SdbotError as exc:
            return _fail(args, lang, exc, EXIT_FAILED)
        if args.dry_run:
            print(json.dumps(request.to_dict(), ensure_ascii=False) if args.json else summary(request, lang))
            return EXIT_OK
        try:  # before generating: a picture paid for must have somewhere to go
            await asyncio.to_thread(_writable, args.out)
        except OSError as exc:
            return _fail(args, lang, _unwritable(args.out, exc), EXIT_INVALID)
        if settings.backend == "placeholder":
            print(t(lang, "cli.placeholder_warning"), file=sys.stderr)
        try:
            result = await generate(backend, request, user=user_key("cli", getpass.getuser()))
        except BackendError as exc:
            return _fail(args, lang, exc, EXIT_FAILED)
    try:
        paths = await asyncio.to_thread(
            _write_images,
            args.out,
            result.request,
            [i.data for i in result.images],
            [i.format for i in result.images],
        )
    except OSError as exc:  # the folder was writable a moment ago: full disk, removed meanwhile
        return _fail(args, lang, _unwritable(args.out, exc), EXIT_FAILED)
    if args.json:
        print(json.dumps({"request": result.request.to_dict(), "images": [str(p) for p in paths]}, ensure_ascii=False))
    else:
        print(summary(result.request, lang))
        if result.drawn.size is not None:  # a ratio-based service chose the size
            print(t(lang, "caption.drawn", drawn=result.drawn.size, ratio=result.drawn.ratio, size=result.request.size))
        for p in paths:
            print(t(lang, "cli.saved", path=p))
    return EXIT_OK


async def _from_picture(path: Path, text: str, caps: Capabilities, max_bytes: int) -> DrawRequest:
    """The request drawing from the picture file ``path``, checked like one sent in chat."""
    if not caps.image_to_image:  # before reading anything, as in chat
        raise DrawError("picture_unsupported", option="image", backend=caps.backend)
    try:
        data = await asyncio.to_thread(_read_bounded, path, max_bytes)
    except OSError as exc:
        raise DrawError("picture_unreadable", option="image", path=str(path), reason=exc.strerror or str(exc)) from None
    info = await pictures.check(data, max_bytes)
    request = parse_request(text, caps, picture=(info.width, info.height))
    return await pictures.attach(request, caps, data, ref="", original=info.size, kept=False)


async def _block_list(settings: Settings) -> list[Rule]:
    """The block list the bot applies, read from ``SDBOT_DB`` without changing it (none before the bot's first
    start created the database), so that operators can try their list with ``--dry-run``."""
    if not is_database_url(settings.db) and not await asyncio.to_thread(Path(settings.db).exists):
        return []
    storage = await open_storage(settings.db, create=False, readonly=True)
    try:
        return await storage.moderation.rules()
    finally:
        await storage.close()


def _read_bounded(path: Path, max_bytes: int) -> bytes:
    """At most one byte more than ``max_bytes`` of ``path``: enough to refuse a bigger file without reading it all."""
    with path.open("rb") as file:
        return file.read(max_bytes + 1)


def summary(request: DrawRequest, lang: Lang) -> str:
    values = {**shown(request, lang), "seed": request.seed if request.seed is not None else Msg("value.random")}
    return t(lang, "request.summary", prompt=request.prompt, **values)


def _writable(out: Path) -> None:
    """Create ``out`` if needed and prove a file can be written in it (raises ``OSError`` otherwise)."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=out):
        pass


def _unwritable(out: Path, exc: OSError) -> SdbotError:
    return SdbotError("output_unwritable", option="out", path=str(out), reason=exc.strerror or str(exc))


def _write_images(out: Path, request: DrawRequest, blobs: list[bytes], formats: list[str]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    paths = []
    for i, (data, fmt) in enumerate(zip(blobs, formats, strict=True), start=1):
        ext = {"JPEG": "jpg"}.get(fmt, fmt.lower())
        path = out / f"sdbot-{stamp}-{request.seed}-{i}.{ext}"
        path.write_bytes(data)
        paths.append(path)
    return paths


def _fail(args: argparse.Namespace, lang: Lang, exc: SdbotError, code: int, hint: str | None = None) -> int:
    message = redact.scrub(render_error(exc, lang) + (f" {hint}" if hint else ""))
    detail = operator_detail(exc)  # the CLI is an operator's tool: the cause, beside the user's sentence
    if detail and not getattr(args, "json", False):
        message += "\n" + t(lang, "cli.detail", detail=detail)
    if getattr(args, "json", False):
        error: dict[str, Any] = {**exc.as_dict(), "message": message, **({"detail": detail} if detail else {})}
        print(json.dumps({"error": error}, ensure_ascii=False))
    else:
        print(message, file=sys.stderr)
    return code


async def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    # The composition root: the core never imports an adapter, the CLI chooses them by name.
    runner = importlib.import_module("adapters.runner")
    try:
        return int(await runner.run(settings))
    except ConfigError as exc:
        print(render_error(exc, settings.lang), file=sys.stderr)
        return EXIT_CONFIG


async def cmd_check(args: argparse.Namespace, settings: Settings) -> int:
    """Build the configured backend and run its probes (no image is generated), then sign in with each chat
    token that is set (nothing is sent to any chat). Exit 0 when every probe passed, 1 when one failed (a
    service or platform refused or unreachable), 3 when the configuration itself is invalid."""
    lang: Lang = resolve_language(args.lang, None, settings.lang)
    print(t(lang, "check.backend", backend=", ".join(settings.backends) if settings.backends else settings.backend))
    try:
        backend = create_backend(settings)
        async with backend:
            report = await backend.check()
    except ConfigError as exc:
        print(render_error(exc, lang), file=sys.stderr)
        return EXIT_CONFIG
    except BackendError as exc:  # a backend whose check raises instead of reporting
        print(_finding(exc, lang), file=sys.stderr)
        return EXIT_FAILED
    for label, value in report.findings:
        # Endpoints are printed as configured: a user:password@ in one is a secret (see Settings.secrets).
        print(redact.scrub(t(lang, "check.line", label=_finding(label, lang), value=_finding(value, lang))))
    # The chat tokens too, each the way the bot signs in: "passed" must not vouch for what was not tried.
    probe = importlib.import_module("adapters.probe")
    tokens = await probe.check_tokens(settings)
    print(t(lang, "check.chat"))
    for token in tokens:
        label = f"{token.platform} ({token.variable})"
        value = t(lang, f"check.token.{token.outcome}", platform=token.platform, detail=token.detail)
        print(redact.scrub(t(lang, "check.line", label=label, value=value)))
    ok = report.ok and not any(token.failed for token in tokens)
    print(t(lang, "check.ok" if ok else "check.failed"))
    return EXIT_OK if ok else EXIT_FAILED


def _finding(value: str | Msg | SdbotError, lang: Lang) -> str:
    if isinstance(value, SdbotError):
        detail = operator_detail(value)
        return render_error(value, lang) + (f" ({t(lang, 'cli.detail', detail=detail)})" if detail else "")
    return value.render(lang) if isinstance(value, Msg) else value
