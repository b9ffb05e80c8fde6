"""The validated /draw request: what every backend receives, what jobs store, what buttons re-run."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from bot.draw import params


@dataclass(frozen=True, slots=True)
class Source:
    """The picture a request draws from. ``ref`` is how its platform can give it again (a Telegram file_id, a
    Discord message's attachment; empty for the CLI's file); ``width`` x ``height`` is the picture as the service
    gets it, fitted by :mod:`bot.draw.picture` from the ``original`` size. ``data`` (that fitted picture, PNG) is
    never serialized: jobs keep it beside them (``kept``) or fetch it again by ``ref``."""

    ref: str
    width: int
    height: int
    original: str  # "3000x2000", as it was sent
    kept: bool = False  # its bytes are stored beside the job: ``ref`` cannot be downloaded again later
    data: bytes = dataclasses.field(default=b"", compare=False, repr=False)

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"

    @property
    def fitted(self) -> bool:
        """Whether it was cropped or resized to what the service draws."""
        return self.original != self.size

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in ("ref", "width", "height", "original", "kept")}

    def with_data(self, data: bytes) -> Source:
        return dataclasses.replace(self, data=data)


@dataclass(frozen=True, slots=True)
class DrawRequest:
    """One generation, with the seed document's field names and defaults (each /draw option's default is its
    field's). Only :mod:`bot.draw.validation` should build one from user input; it is also rebuilt from storage
    with :meth:`from_json`."""

    prompt: str
    negative_prompt: str | None = None
    size: str = "1024x1024"
    n: int = 1
    steps: int = 20
    sampler_index: str = "Euler a"
    seed: int | None = None
    cfg_scale: float = 5.0
    style: str = params.DEFAULT_STYLE
    model: str | None = None  # one of a pool's services, by the operator's name for it (--model)
    strength: float | None = None  # how far to move from ``source`` (0 keeps it, 1 ignores it); set with it
    source: Source | None = None  # the picture it draws from (image-to-image), or None
    # "draw", or "upscale": ``source`` at ``size`` (twice its sides), nothing else drawn (the Upscale button)
    task: str = "draw"

    @property
    def width(self) -> int:
        return int(self.size.split("x")[0])

    @property
    def height(self) -> int:
        return int(self.size.split("x")[1])

    def with_seed(self, seed: int | None) -> DrawRequest:
        return dataclasses.replace(self, seed=seed)

    def with_source(self, source: Source | None) -> DrawRequest:
        return dataclasses.replace(self, source=source)

    def to_dict(self) -> dict[str, Any]:
        """The seed document's JSON body (without ``user_id``), key order as documented (the fields' order); ours
        (``model``: a pool's service; ``strength`` and ``source``: drawing from a picture) only when set, and the
        picture by reference, never its bytes."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for key in ("model", "strength", "source"):
            if data[key] is None:
                del data[key]
        if self.task == "draw":
            del data["task"]
        if self.source is not None:
            data["source"] = self.source.to_dict()
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DrawRequest:
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in fields}
        if isinstance(values.get("source"), dict):
            values["source"] = Source(**values["source"])
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> DrawRequest:
        return cls.from_dict(json.loads(text))
