"""The validated /draw request: what every backend receives, what jobs store, what buttons re-run."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from bot.draw import params


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

    @property
    def width(self) -> int:
        return int(self.size.split("x")[0])

    @property
    def height(self) -> int:
        return int(self.size.split("x")[1])

    def with_seed(self, seed: int | None) -> DrawRequest:
        return dataclasses.replace(self, seed=seed)

    def to_dict(self) -> dict[str, Any]:
        """The seed document's JSON body (without ``user_id``), key order as documented (the fields' order); ``model``
        (ours: a pool's service) only when one was chosen."""
        data = dataclasses.asdict(self)
        if data["model"] is None:
            del data["model"]
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DrawRequest:
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in fields})

    @classmethod
    def from_json(cls, text: str) -> DrawRequest:
        return cls.from_dict(json.loads(text))
