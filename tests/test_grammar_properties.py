"""Properties of the grammar over generated input: it never fails in an undocumented way, and rendering a
request back to text and parsing it again gives the same request."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.draw import params
from bot.draw.grammar import QUOTES, render_command
from bot.draw.request import DrawRequest
from bot.draw.sanitize import blank, clean
from bot.draw.validation import parse_request
from bot.errors import DrawError
from bot.messages.i18n import render_error

DOCUMENTED = {
    "empty_prompt",
    "prompt_too_long",
    "negative_too_long",
    "unknown_option",
    "missing_value",
    "duplicate_option",
    "invalid_number",
    "out_of_range",
    "unsupported_size",
    "unknown_style",
    "unknown_sampler",
    "unclosed_quote",
}

# Text built from the pieces that matter to the grammar, mixed with arbitrary text.
PIECES = st.sampled_from(
    [
        "--style", "—style", "－－size", "--n", "--n=", "--steps", "--seed", "--cfg", "--cfg-scale", "--sampler",
        "--neg", "--no", "--negative", "--foo", "=", "＝", "anime", "analog", "film", "dpm++", "sde", "karras",
        "euler", "a", "768x1024", "768", "x", "×", "1024", "2", "30", "-1", "1e5", "nan", "动漫", "/draw",
        "/draw@bot", " ", "  ", "\n", "\t", *QUOTES, *QUOTES.values(), "\\", "\\\"", "\u200b", "\u202e", "\x00",
    ]
)  # fmt: skip
TEXT = st.lists(st.one_of(PIECES, st.text(max_size=8)), max_size=30).map(" ".join) | st.text(max_size=200)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TEXT)
def test_any_text_parses_or_raises_a_documented_error(text: str) -> None:
    try:
        request = parse_request(text)
    except DrawError as exc:
        assert exc.code in DOCUMENTED
        for lang in ("en", "zh"):
            assert render_error(exc, lang)  # type: ignore[arg-type]
        return
    assert 1 <= len(request.prompt) <= params.PROMPT_MAX and not blank(request.prompt)
    assert request.prompt == clean(request.prompt)  # no control characters or bidi overrides survive
    assert parse_request(render_command(request)) == request


# Texts as validation leaves them: cleaned of control characters, stripped, with something visible.
PROMPTS = st.text(min_size=1, max_size=60).map(clean).map(str.strip).filter(lambda text: not blank(text))
REQUESTS = st.builds(
    DrawRequest,
    prompt=PROMPTS,
    negative_prompt=st.none() | PROMPTS.filter(lambda text: len(text) <= 40),
    size=st.sampled_from(params.SIZES),
    n=st.integers(*params.N_RANGE),
    steps=st.integers(*params.STEPS_RANGE),
    sampler_index=st.sampled_from(params.SAMPLERS),
    seed=st.none() | st.integers(*params.SEED_RANGE),
    cfg_scale=st.floats(*params.CFG_RANGE, allow_nan=False),
    style=st.sampled_from(list(params.STYLES)),
)


@settings(max_examples=1500, deadline=None)
@given(REQUESTS, st.booleans())
def test_render_then_parse_is_identity(request: DrawRequest, include_defaults: bool) -> None:
    assert parse_request(render_command(request, include_defaults=include_defaults)) == request
