"""Services that draw at an aspect ratio: which ratio each size stands for, what validation refuses, and what the
caption says about the picture that was drawn."""

from __future__ import annotations

import pytest

from bot.backends import stable_image
from bot.draw import params
from bot.draw.shape import ASPECT_RATIOS, Drawn, matches_ratio, nearest_ratio
from bot.draw.validation import parse_request
from bot.errors import DrawError
from bot.messages.presentation import caption, parameters_line


@pytest.mark.parametrize(
    ("size", "ratio"),
    [
        ("1024x1024", "1:1"),
        ("768x768", "1:1"),
        ("1024x768", "5:4"),  # 1.33: 5:4 (1.25) is nearer than 3:2 (1.5) by the logarithm
        ("2048x1536", "5:4"),
        ("768x1024", "4:5"),
        ("1024x576", "16:9"),
        ("2048x1152", "16:9"),
        ("576x1024", "9:16"),
        ("1152x2048", "9:16"),
    ],
)
def test_every_seed_size_has_its_nearest_ratio(size: str, ratio: str) -> None:
    width, height = (int(part) for part in size.split("x"))
    assert nearest_ratio(width, height) == ratio


def test_extreme_shapes_take_the_widest_and_tallest_ratios() -> None:
    assert nearest_ratio(4000, 1000) == "21:9" and nearest_ratio(1000, 4000) == "9:21"
    assert set(nearest_ratio(int(s.split("x")[0]), int(s.split("x")[1])) for s in params.SIZES) <= set(ASPECT_RATIOS)


def test_what_services_draw_matches_the_ratio_and_a_wrong_picture_does_not() -> None:
    assert matches_ratio(1344, 768, "16:9") and matches_ratio(896, 1088, "4:5") and matches_ratio(640, 1536, "9:21")
    assert not matches_ratio(1024, 1024, "16:9") and not matches_ratio(768, 1344, "16:9")


def test_a_ratio_service_takes_every_size_and_refuses_steps_and_sampler() -> None:
    caps = stable_image.capabilities("stability", stable_image.V2_MODELS["core"][1])
    for size in params.SIZES:
        assert parse_request(f"cat --size {size}", caps).size == size
    for option in ("--steps 30", '--sampler "Euler a"', "--cfg 7"):
        with pytest.raises(DrawError) as caught:
            parse_request(f"cat {option}", caps)
        assert caught.value.code == "unsupported_option"
    assert parse_request("cat --style Anime", caps).style == "Anime"


def test_sd35_takes_cfg_in_its_range_and_turbo_no_negative_prompt() -> None:
    large = stable_image.capabilities("stability", stable_image.V2_MODELS["sd3.5-large"][1])
    assert parse_request("cat --cfg 9", large).cfg_scale == 9
    with pytest.raises(DrawError) as caught:
        parse_request("cat --cfg 12", large)
    assert caught.value.code == "out_of_range"
    turbo = stable_image.capabilities("stability", stable_image.V2_MODELS["sd3.5-large-turbo"][1])
    with pytest.raises(DrawError) as caught:
        parse_request("cat --negative dogs", turbo)
    assert caught.value.code == "unsupported_option"


def test_bedrock_models_take_no_style() -> None:
    caps = stable_image.capabilities("bedrock", stable_image.BEDROCK_MODELS["stability.sd3-5-large-v1:0"])
    with pytest.raises(DrawError) as caught:
        parse_request("cat --style Anime", caps)
    assert caught.value.code == "unsupported_option"


def test_the_form_fields_carry_the_ratio_seed_and_preset() -> None:
    request = parse_request("cat --size 1024x576 --style Anime --negative dogs --seed 4294967295")
    fields = stable_image.fields(request, stable_image.V2_MODELS["sd3.5-large"][1], seed=request.seed or 0)
    assert fields["aspect_ratio"] == "16:9" and fields["style_preset"] == "anime"
    assert fields["negative_prompt"] == "dogs" and fields["cfg_scale"] == 5.0
    assert fields["seed"] == 0 or 0 <= fields["seed"] <= 4294967294
    turbo = stable_image.fields(request, stable_image.V2_MODELS["sd3.5-flash"][1], seed=7)
    assert "negative_prompt" not in turbo and "cfg_scale" not in turbo


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_the_caption_shows_the_drawn_size_and_hides_what_the_service_did_not_use(lang: str) -> None:
    request = parse_request("a cat --size 1024x576 --seed 9").with_seed(9)
    drawn = Drawn(size="1344x768", ratio="16:9", unused=frozenset({"steps", "sampler", "cfg"}))
    line = parameters_line(request, lang, drawn)
    assert "1344x768" in line and "16:9" in line and "1024x576" in line
    assert "Euler a" not in line and "CFG" not in line and ("20 steps" not in line and "20 步" not in line)
    plain = parameters_line(request, lang)
    assert "Euler a" in plain and "CFG 5" in plain and "1344x768" not in plain
    text = caption(request, lang, limit=200, drawn=drawn)
    assert text.startswith("a cat") and text.endswith(line)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_help_says_how_a_ratio_service_draws_a_size_and_leaves_out_what_it_does_not_take(lang: str) -> None:
    from bot.commands import Commands

    caps = stable_image.capabilities("stability", stable_image.V2_MODELS["core"][1])
    text = Commands.help_text(None, lang, caps, admin=False)  # type: ignore[arg-type]
    assert "16:9" in text and "--size" in text and "--steps" not in text and "--sampler" not in text
