"""The picture a /draw draws from: every way it can be wrong is refused with its own code before anything is
decoded at full size, and a good one is fitted (turned upright, cropped around its centre, resized, flattened)
to what the service draws at. Validation takes the picture's shape and the service's default strength."""

from __future__ import annotations

import dataclasses
import io

import pytest
from PIL import Image

from bot.draw import picture
from bot.draw.capabilities import SEED
from bot.draw.shape import ASPECT_RATIOS, matches_ratio
from bot.draw.validation import parse_request
from bot.errors import DrawError
from bot.messages.i18n import render_error

PICTURES = dataclasses.replace(SEED, image_to_image=True, strength=0.65)
RATIOS = dataclasses.replace(PICTURES, aspect_ratios=ASPECT_RATIOS)
LIMIT = 10 * 2**20


def encoded(img: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **options)
    return out.getvalue()


def halves(width: int, height: int) -> Image.Image:
    """Left half red, right half blue."""
    img = Image.new("RGB", (width, height), (230, 0, 0))
    img.paste((0, 0, 230), (width // 2, 0, width, height))
    return img


def refusal(data: bytes, limit: int = LIMIT) -> DrawError:
    with pytest.raises(DrawError) as caught:
        picture.read(data, limit)
    return caught.value


def test_good_pictures_are_read_in_each_format() -> None:
    for fmt in picture.FORMATS:
        info = picture.read(encoded(halves(640, 480), fmt), LIMIT)
        assert (info.format, info.width, info.height) == (fmt, 640, 480)


def test_every_bad_picture_has_its_own_refusal() -> None:
    assert refusal(b"GIF89a and then nothing").code == "picture_not_image"
    cut = encoded(halves(900, 900), "JPEG")[:1500]  # its header is whole: decoding it shows it is cut short
    assert picture.read(cut, LIMIT).size == "900x900"
    with pytest.raises(DrawError) as damaged:
        picture.fit(cut, 512, 512)
    assert damaged.value.code == "picture_not_image"
    gif = refusal(encoded(halves(200, 200), "GIF"))
    assert (gif.code, gif.params["found"]) == ("picture_format", "GIF")
    small = refusal(encoded(halves(200, 40)))
    assert (small.code, small.params["found"]) == ("picture_too_small", "200x40")
    big = refusal(encoded(halves(400, 400)), limit=256)
    assert big.code == "picture_too_large" and big.params["max_mb"] == "0"


def test_a_decompression_bomb_is_refused_from_its_header() -> None:
    bomb = encoded(Image.new("1", (10_000, 8_000)))  # a few kilobytes that would decode to 80 megapixels
    assert len(bomb) < 100_000
    error = refusal(bomb)
    assert (error.code, error.params["found"]) == ("picture_too_many_pixels", "10000x8000")
    assert "50" in render_error(error, "en") and "百万像素" in render_error(error, "zh")


def colours(data: bytes) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, int]]:
    with Image.open(io.BytesIO(data)) as img:
        rgb = img.convert("RGB")
        middle = rgb.height // 2
        return rgb.getpixel((2, middle)), rgb.getpixel((rgb.width - 3, middle)), rgb.size  # type: ignore[return-value]


def test_fitting_crops_around_the_centre_and_resizes() -> None:
    # A wide picture fitted to a square keeps its middle: red on the left, blue on the right, halves equal.
    left, right, size = colours(picture.fit(encoded(halves(1600, 400)), 512, 512))
    assert size == (512, 512) and left[0] > 200 and right[2] > 200
    # A tall one fitted to a wide shape keeps both halves too (the crop is vertical).
    left, right, size = colours(picture.fit(encoded(halves(300, 900)), 1024, 576))
    assert size == (1024, 576) and left[0] > 200 and right[2] > 200


def test_fitting_turns_a_phone_photo_upright_and_flattens_transparency() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: the camera was turned; viewers rotate it 90° clockwise
    sideways = encoded(halves(400, 200), "JPEG", exif=exif, quality=95)
    left, right, size = colours(picture.fit(sideways, 200, 400))
    assert size == (200, 400)
    assert abs(left[0] - right[0]) < 40  # upright, the halves are top and bottom: left and right edges agree
    clear = Image.new("RGBA", (300, 300), (0, 0, 0, 0))
    left, _, _ = colours(picture.fit(encoded(clear), 256, 256))
    assert left == (255, 255, 255)


@pytest.mark.parametrize(
    ("shape", "size"), [((1280, 720), "1024x576"), ((600, 800), "768x1024"), ((500, 500), "1024x1024")]
)
def test_without_a_size_the_pictures_shape_chooses_it(shape: tuple[int, int], size: str) -> None:
    request = parse_request("a cat", PICTURES, picture=shape)
    assert request.size == size and request.strength == 0.65


def test_a_ratio_service_gets_about_a_megapixel_at_the_nearest_ratio() -> None:
    for size in ("1024x576", "768x1024", "2048x2048", "1152x2048"):
        width, height = picture.target(RATIOS, size)
        sides = [int(s) for s in size.split("x")]
        assert width % 64 == 0 and height % 64 == 0 and 0.8e6 < width * height < 1.3e6
        assert matches_ratio(width, height, f"{sides[0]}:{sides[1]}") or size == "768x1024"
    assert picture.target(PICTURES, "768x1024") == (768, 1024)  # a size-based service: the size itself


def test_strength_is_for_pictures_and_pictures_for_services_that_take_them() -> None:
    with pytest.raises(DrawError) as no_picture:
        parse_request("a cat --strength 0.5", PICTURES)
    assert no_picture.value.code == "strength_needs_picture"
    with pytest.raises(DrawError) as unsupported:
        parse_request("a cat", SEED, picture=(512, 512))
    assert unsupported.value.code == "picture_unsupported"
    with pytest.raises(DrawError) as no_option:
        parse_request("a cat --strength 0.5", SEED)
    assert no_option.value.code == "unsupported_option"
    with pytest.raises(DrawError) as out:
        parse_request("a cat --strength 1.5", PICTURES, picture=(512, 512))
    assert out.value.code == "out_of_range"
    assert parse_request("a cat --denoise 0.25 --size 768x768", PICTURES, picture=(512, 512)).strength == 0.25
