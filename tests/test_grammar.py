"""The /draw language: every rule of the grammar and every error code, in both languages."""

from __future__ import annotations

import dataclasses

import pytest

from bot.draw.capabilities import SEED, Capabilities
from bot.draw.grammar import DrawArgs, parse, render_command, tokenize
from bot.draw.request import DrawRequest
from bot.draw.validation import parse_request, validate
from bot.errors import DrawError
from bot.messages.i18n import render_error


def req(**fields: object) -> DrawRequest:
    return DrawRequest(**{"prompt": "cat", **fields})  # type: ignore[arg-type]


ACCEPTED: list[tuple[str, DrawRequest]] = [
    ("cat", req()),
    ("/draw cat", req()),
    ("/draw@SomeBot cat", req()),
    ("/DRAW@some_bot   cat  ", req()),
    ("/draw cat --style Anime --size 768x1024 --n 2", req(style="Anime", size="768x1024", n=2)),
    ("a cat --n 2 on a mat", req(prompt="a cat on a mat", n=2)),
    ("cat --n=3", req(n=3)),
    ("cat --STYLE anime", req(style="Anime")),
    ("cat --Style=ANIME", req(style="Anime")),
    # phone dashes and full-width forms
    ("cat —style anime", req(style="Anime")),
    ("cat –style anime", req(style="Anime")),
    ("cat ——style anime", req(style="Anime")),
    ("cat －－style anime", req(style="Anime")),
    ("cat －－style＝anime", req(style="Anime")),
    ("cat --size 768×1024", req(size="768x1024")),
    ("cat --size 768*1024", req(size="768x1024")),
    ("cat --size 768＊1024", req(size="768x1024")),
    ("cat --size ７６８x１０２４", req(size="768x1024")),
    ("cat --size 768 x 1024", req(size="768x1024")),
    ("cat --size 768X1024", req(size="768x1024")),
    # enumerated values spanning words, longest match, the rest is prompt
    ("cat --sampler dpm++ sde karras", req(sampler_index="DPM++ SDE Karras")),
    ("cat --sampler dpm++ sde", req(sampler_index="DPM++ SDE")),
    ("cat --sampler euler a", req(sampler_index="Euler a")),
    ("cat --sampler euler at night", req(prompt="cat at night", sampler_index="Euler")),
    ("cat --style analog film", req(style="Analog Film")),
    ("cat --style analog film grain", req(prompt="cat grain", style="Analog Film")),
    ("cat --style 动漫", req(style="Anime")),
    ("cat --style 模拟胶片", req(style="Analog Film")),
    ("cat --style low poly", req(style="Lowpoly")),
    ("cat --style neon-punk", req(style="Neonpunk")),
    ("cat --style modeling-compound", req(style="Craft Clay")),
    ('cat --style "comic book"', req(style="Comic Book")),
    ("cat --style=「3d model」", req(style="3D Model")),
    ("cat --sampler-index LMS", req(sampler_index="LMS")),
    ("cat --sampler_index lms karras", req(sampler_index="LMS Karras")),
    # an option's Chinese name (its name on Discord in Chinese) is another spelling of it
    ("猫 --步数 30 —风格 动漫 --反向描述 狗", req(prompt="猫", steps=30, style="Anime", negative_prompt="狗")),
    # numbers
    ("cat --steps 10", req(steps=10)),
    ("cat --steps 50", req(steps=50)),
    ("cat --steps ５０", req(steps=50)),
    ("cat --seed 0", req(seed=0)),
    ("cat --seed 4294967295", req(seed=4294967295)),
    ("cat --cfg 7.5", req(cfg_scale=7.5)),
    ("cat --cfg-scale 0", req(cfg_scale=0.0)),
    ("cat --cfg_scale 30", req(cfg_scale=30.0)),
    ("cat --cfg .5", req(cfg_scale=0.5)),
    # negative prompt runs to the next option
    ("cat --negative blurry, low quality --n 2", req(negative_prompt="blurry, low quality", n=2)),
    ("cat --neg blurry", req(negative_prompt="blurry")),
    ("cat --no dogs --style anime", req(negative_prompt="dogs", style="Anime")),
    ('cat --negative "a --n 2"', req(negative_prompt="a --n 2")),
    # quotes group values and prompt parts
    ('"a cat --n 2 on a mat"', req(prompt="a cat --n 2 on a mat")),
    ("“a cat” --n 2", req(prompt="a cat", n=2)),
    ("「猫」 --n 2", req(prompt="猫", n=2)),
    ("'a cat' --n 2", req(prompt="a cat", n=2)),
    (r'"say \"hi\"" --n 2', req(prompt='say "hi"', n=2)),
    ("the cat's toy", req(prompt="the cat's toy")),
    # lone dashes and numbers with dashes are prompt text
    ("cat -- dog", req(prompt="cat -- dog")),
    ("cat — dog", req(prompt="cat — dog")),
    ("temperature --5 degrees", req(prompt="temperature --5 degrees")),
    ("一只猫 --n 2", req(prompt="一只猫", n=2)),
    ("x" * 1024, req(prompt="x" * 1024)),
]


@pytest.mark.parametrize(("text", "expected"), ACCEPTED, ids=[t for t, _ in ACCEPTED])
def test_accepted(text: str, expected: DrawRequest) -> None:
    assert parse_request(text) == expected


REJECTED: list[tuple[str, str, str | None]] = [
    ("", "empty_prompt", "prompt"),
    ("/draw", "empty_prompt", "prompt"),
    ("/draw@bot   ", "empty_prompt", "prompt"),
    ("--n 2", "empty_prompt", "prompt"),
    ('"   "', "empty_prompt", "prompt"),
    ("x" * 1025, "prompt_too_long", "prompt"),
    ("cat --negative " + "y" * 1025, "negative_too_long", "negative"),
    ("cat --foo 1", "unknown_option", "foo"),
    ("cat —stlye anime", "unknown_option", "stlye"),
    ("cat --style", "missing_value", "style"),
    ("cat --n --steps 20", "missing_value", "n"),
    ("cat --negative --n 2", "missing_value", "negative"),
    ('cat --negative ""', "missing_value", "negative"),
    ("cat --n 2 --n 3", "duplicate_option", "n"),
    ("cat --neg a --negative b", "duplicate_option", "negative"),
    ("cat --cfg 5 --cfg-scale 6", "duplicate_option", "cfg"),
    ("cat --n two", "invalid_number", "n"),
    ("cat --n 2.5", "invalid_number", "n"),
    ("cat --steps 2_0", "invalid_number", "steps"),
    ("cat --seed 1e3", "invalid_number", "seed"),
    ("cat --cfg seven", "invalid_number", "cfg"),
    ("cat --cfg nan", "invalid_number", "cfg"),
    ("cat --n 0", "out_of_range", "n"),
    ("cat --n 5", "out_of_range", "n"),
    ("cat --steps 9", "out_of_range", "steps"),
    ("cat --steps 51", "out_of_range", "steps"),
    ("cat --seed -1", "out_of_range", "seed"),
    ("cat --seed 4294967296", "out_of_range", "seed"),
    ("cat --seed " + "9" * 5000, "out_of_range", "seed"),
    ("cat --cfg 30.01", "out_of_range", "cfg"),
    ("cat --cfg -0.5", "out_of_range", "cfg"),
    ("cat --cfg 1e400", "out_of_range", "cfg"),
    ("cat --size 1000x1000", "unsupported_size", "size"),
    ("cat --size big", "unsupported_size", "size"),
    ("cat --size 1024", "unsupported_size", "size"),
    ("cat --style anmie", "unknown_style", "style"),
    ("cat --style watercolor", "unknown_style", "style"),
    ("cat --sampler ddim", "unknown_sampler", "sampler"),
    ("cat --sampler eulr", "unknown_sampler", "sampler"),
    ('"a cat', "unclosed_quote", None),
    ("cat --style “anime", "unclosed_quote", None),
    ("cat --style=「anime", "unclosed_quote", None),
]


@pytest.mark.parametrize(("text", "code", "option"), REJECTED, ids=[t[:40] for t, _, _ in REJECTED])
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_rejected(text: str, code: str, option: str | None, lang: str) -> None:
    with pytest.raises(DrawError) as info:
        parse_request(text)
    assert info.value.code == code
    assert info.value.option == option
    message = render_error(info.value, lang)  # type: ignore[arg-type]
    assert message and "{" not in message
    has_chinese = any("\u4e00" <= ch <= "\u9fff" for ch in message)
    assert has_chinese == (lang == "zh"), message


def test_messages_say_what_is_allowed() -> None:
    with pytest.raises(DrawError) as info:
        parse_request("cat --style anmie")
    en = render_error(info.value, "en")
    zh = render_error(info.value, "zh")
    assert "Did you mean “Anime”?" in en and "Pixel Art" in en
    assert "Anime（动漫）" in zh and "“Anime”" in zh
    with pytest.raises(DrawError) as info:
        parse_request("cat --steps 80")
    assert "10" in render_error(info.value, "en") and "50" in render_error(info.value, "en")
    assert "80" in render_error(info.value, "zh")
    with pytest.raises(DrawError) as info:
        parse_request("cat --size 10x10")
    assert "768x1024" in render_error(info.value, "en")
    with pytest.raises(DrawError) as info:
        parse_request("cat --stlye anime")
    assert "--style" in render_error(info.value, "en")


@pytest.mark.parametrize(
    ("typed", "suggested"),
    [("动画", "动漫"), ("摄像", "摄影"), ("漫画书", "漫画"), ("像素画", "像素艺术"), ("幻想美术", "幻想艺术")],
)
def test_a_mistyped_chinese_style_gets_a_suggestion_in_chinese(typed: str, suggested: str) -> None:
    with pytest.raises(DrawError) as info:
        parse_request(f"猫 --style {typed}")
    assert info.value.code == "unknown_style"
    assert f"“{suggested}”" in render_error(info.value, "zh")
    assert f"Did you mean “{suggested}”?" in render_error(info.value, "en")


def test_unknown_value_without_close_match_has_no_hint() -> None:
    with pytest.raises(DrawError) as info:
        parse_request("cat --style qqqqqqqq")
    assert "Did you mean" not in render_error(info.value, "en")


def test_tokens() -> None:
    kinds = [(t.kind, t.value) for t in tokenize('a "b c" --n=2 —style「x y」')]
    assert kinds == [("word", "a"), ("quoted", "b c"), ("option", "n"), ("option", "style"), ("quoted", "x y")]


def test_backend_capabilities_restrict_values() -> None:
    caps = Capabilities(
        backend="stability",
        sizes=("1024x1024", "1152x896"),
        samplers=("Euler", "Euler a", "DDIM"),
        styles=("Base", "Anime"),
        max_n=2,
        steps=(10, 40),
        negative_prompt=True,
        seed=True,
    )
    assert parse_request("cat --sampler ddim --size 1152x896", caps).sampler_index == "DDIM"
    cases = {
        "cat --size 768x1024": ("unsupported_size", "1152x896"),
        "cat --style Pixel Art": ("unsupported_style", "stability"),
        "cat --sampler Heun": ("unsupported_sampler", "DDIM"),
        "cat --n 3": ("out_of_range", "2"),
        "cat --steps 45": ("out_of_range", "40"),
    }
    for text, (code, shown) in cases.items():
        with pytest.raises(DrawError) as info:
            parse_request(text, caps)
        assert info.value.code == code, text
        assert shown in render_error(info.value, "en")
        assert shown in render_error(info.value, "zh")


def test_backend_without_negative_or_seed() -> None:
    caps = dataclasses.replace(SEED, backend="x", negative_prompt=False, seed=False)
    for text, option in (("cat --neg dog", "negative"), ("cat --seed 3", "seed")):
        with pytest.raises(DrawError) as info:
            parse_request(text, caps)
        assert (info.value.code, info.value.option) == ("unsupported_option", option)


def test_defaults_follow_backend_when_seed_default_unavailable() -> None:
    caps = dataclasses.replace(SEED, backend="x", sizes=("1152x896",), samplers=("DDIM",), styles=("Anime",))
    request = parse_request("cat", caps)
    assert (request.size, request.sampler_index, request.style) == ("1152x896", "DDIM", "Anime")


def test_typed_options_merge_and_duplicates() -> None:
    args = parse("cat --style anime")
    merged = args.merge({"n": 2, "steps": None, "cfg": 7.5})
    assert validate(merged) == req(style="Anime", n=2, cfg_scale=7.5)
    with pytest.raises(DrawError) as info:
        parse("cat --n 2").merge({"n": 3})
    assert (info.value.code, info.value.option) == ("duplicate_option", "n")
    # typed values are validated again: Discord's clients enforce ranges, discord.py does not
    with pytest.raises(DrawError) as info:
        validate(DrawArgs("cat", {"n": 9}))
    assert info.value.code == "out_of_range"
    with pytest.raises(DrawError) as info:
        validate(DrawArgs("cat", {"steps": True}))
    assert info.value.code == "invalid_number"
    with pytest.raises(DrawError) as info:
        validate(DrawArgs("cat", {"style": "Nope"}))
    assert info.value.code == "unknown_style"


def test_render_round_trip_examples() -> None:
    for text, expected in ACCEPTED:
        rendered = render_command(expected)
        assert parse_request(rendered) == expected, (text, rendered)
    full = req(prompt="a  spaced\tprompt", negative_prompt='has "quotes" and \\', seed=7, cfg_scale=7.25)
    assert parse_request(render_command(full)) == full
    assert parse_request(render_command(full, include_defaults=True)) == full
