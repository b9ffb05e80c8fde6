"""The /draw parameters exactly as the Qianfan SDXL seed document defines them."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping

SIZES: tuple[str, ...] = (
    "768x768",
    "1024x1024",
    "1536x1536",
    "2048x2048",
    "1024x768",
    "2048x1536",
    "768x1024",
    "1536x2048",
    "1024x576",
    "2048x1152",
    "576x1024",
    "1152x2048",
)

SAMPLERS: tuple[str, ...] = (
    "Euler",
    "Euler a",
    "DPM++ 2M",
    "DPM++ 2M Karras",
    "LMS Karras",
    "DPM++ SDE",
    "DPM++ SDE Karras",
    "DPM2 a Karras",
    "Heun",
    "DPM++ 2M SDE",
    "DPM++ 2M SDE Karras",
    "DPM2",
    "DPM2 Karras",
    "DPM2 a",
    "LMS",
)

# Style -> its Chinese name in the seed document.
STYLES: Mapping[str, str] = {
    "Base": "基础风格",
    "3D Model": "3D模型",
    "Analog Film": "模拟胶片",
    "Anime": "动漫",
    "Cinematic": "电影",
    "Comic Book": "漫画",
    "Craft Clay": "工艺黏土",
    "Digital Art": "数字艺术",
    "Enhance": "增强",
    "Fantasy Art": "幻想艺术",
    "Isometric": "等距风格",
    "Line Art": "线条艺术",
    "Lowpoly": "低多边形",
    "Neonpunk": "霓虹朋克",
    "Origami": "折纸",
    "Photographic": "摄影",
    "Pixel Art": "像素艺术",
    "Texture": "纹理",
}

# Other spellings people paste from Stability's API (style_preset values) that our key folding misses.
STYLE_ALIASES: Mapping[str, str] = {
    "tile-texture": "Texture",
    "modeling-compound": "Craft Clay",
    "comic": "Comic Book",
    "photo": "Photographic",
}

PROMPT_MAX = 1024
NEGATIVE_MAX = 1024
N_RANGE = (1, 4)
STEPS_RANGE = (10, 50)
SEED_RANGE = (0, 4294967295)
CFG_RANGE = (0.0, 30.0)
STRENGTH_RANGE = (0.0, 1.0)  # ours (drawing from a picture): Stability's strength, A1111's denoising_strength

DEFAULT_STYLE = "Base"  # no style: what a backend without styles draws


# What fold and size_key drop; the regular expressions' \s is exactly str.isspace().
_FOLDED_OUT = re.compile(r"[\s_-]+")
_SPACES = re.compile(r"\s+")


def fold(text: str) -> str:
    """The key enumerated values are compared by: NFKC, case-folded, without spaces, '_' and '-'.

    So ``dpm++ sde karras``, ``DPM++_SDE_Karras`` and ``ｄｐｍ＋＋ＳＤＥ Ｋａｒｒａｓ`` are one sampler, and
    ``low poly`` / ``low-poly`` / ``Lowpoly`` one style.
    """
    return _FOLDED_OUT.sub("", unicodedata.normalize("NFKC", text).casefold())


def size_key(text: str) -> str:
    """Fold a size: ``768×1024``, ``768 * 1024``, ``７６８Ｘ１０２４`` all become ``768x1024``."""
    text = _SPACES.sub("", unicodedata.normalize("NFKC", text).casefold())
    return text.replace("×", "x").replace("*", "x")


# The digits of a whole number typed by someone: past this many it is out of every range, and int() is not asked
# to read thousands of them (Python refuses beyond 4300 with a ValueError of its own).
DIGITS_MAX = 18


def is_whole_number(word: str) -> bool:
    """Digits only (full-width ones too), few enough to read. isdecimal, not isdigit: "²" is a digit that
    int() cannot read."""
    return word.isdecimal() and len(word) <= DIGITS_MAX


def whole_number(text: str, minimum: int, maximum: int) -> int | None:
    """``text`` as a whole number in ``minimum..maximum`` (surrounding spaces and full-width digits allowed),
    or None: never an exception, whatever was typed (``²``, ``1e3``, ten thousand digits). Admin arguments in
    chat and on the command line are read with it."""
    word = text.strip()
    if not is_whole_number(word):
        return None
    value = int(word)
    return value if minimum <= value <= maximum else None
