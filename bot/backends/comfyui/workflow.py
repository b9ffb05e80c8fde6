"""The workflow ComfyUI runs for a /draw: an API-format graph (``{node_id: {"class_type", "inputs"}}``), the
shipped SDXL text-to-image one or the operator's (``COMFYUI_WORKFLOW``), and the inputs the request fills.

Which input takes what is found in the graph (the one KSampler's seed, steps, cfg, sampler and scheduler; the
texts its positive and negative inputs come from; the size and batch of its latent) or named by the operator in
``COMFYUI_BINDINGS``: ``prompt=6.text,seed=3.seed,...``, each ``role=node.input``.

Drawing from a picture (image-to-image) runs a second workflow: the shipped one with its EmptyLatentImage replaced
by LoadImage -> VAEEncode (the VAE its VAEDecode uses), or the operator's ``COMFYUI_IMG2IMG_WORKFLOW``, found the same
way plus the one LoadImage's ``image`` (the uploaded picture's name) and the KSampler's ``denoise`` (``--strength``);
``COMFYUI_BINDINGS`` names them there as ``image=`` and ``denoise=``. The Upscale button runs :func:`upscale_graph`."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from bot.backends.comfyui.samplers import comfy_sampler
from bot.draw.request import DrawRequest
from bot.errors import ConfigError
from bot.messages.i18n import Msg

Graph = dict[str, Any]
# What a request can fill, and the /draw option each one serves (None: not an option of its own).
ROLES: Mapping[str, str | None] = {
    "prompt": None,
    "negative": "negative",
    "seed": "seed",
    "steps": "steps",
    "cfg": "cfg",
    "sampler": "sampler",
    "scheduler": None,
    "width": "size",
    "height": "size",
    "batch": None,  # without it, --n runs one prompt per picture
    "checkpoint": None,
    "image": None,  # image-to-image: the LoadImage input that gets the uploaded picture's name
    "denoise": None,  # image-to-image: how far from the picture (--strength)
}
# The roles only an image-to-image workflow has (COMFYUI_IMG2IMG_WORKFLOW's, or the one built from the shipped one).
IMG2IMG_ROLES = frozenset({"image", "denoise"})
LATENT_ROLES = frozenset({"width", "height", "batch"})  # an empty latent's, which an image-to-image workflow may lack
SAMPLER_CLASSES: Mapping[str, str] = {"KSampler": "seed", "KSamplerAdvanced": "noise_seed"}
DEFAULT_STRENGTH = 0.6  # --strength when none is typed: the picture's layout and colours stay, its details change
UPSCALE_METHOD = "lanczos"  # ImageScale's resampling from the model's factor (x4, x2...) to exactly twice the sides


@dataclass(frozen=True)
class Workflow:
    """A graph and where each role's value goes: ``bindings[role] = (node_id, input_name)``."""

    graph: Graph
    bindings: Mapping[str, tuple[str, str]]
    source: str  # "default" or the file's path, for messages

    @property
    def unsupported(self) -> frozenset[str]:
        """The /draw options this workflow has no input for."""
        served = {ROLES[role] for role in self.bindings}
        return frozenset(option for option in set(ROLES.values()) if option is not None and option not in served)

    def fill(self, request: DrawRequest, *, seed: int, image: str | None = None) -> Graph:
        """A copy of the graph with the request's values in their inputs (``image``: the uploaded picture's name,
        for an image-to-image workflow)."""
        values: dict[str, Any] = {
            "prompt": request.prompt,
            "negative": request.negative_prompt or "",
            "seed": seed,
            "steps": request.steps,
            "cfg": request.cfg_scale,
            "width": request.width,
            "height": request.height,
            "batch": request.n,
            "denoise": request.strength if request.strength is not None else DEFAULT_STRENGTH,
        }
        if image is not None:
            values["image"] = image
        pair = comfy_sampler(request.sampler_index)
        if pair is not None:
            values["sampler"], values["scheduler"] = pair
        graph = copy.deepcopy(self.graph)
        for role, (node, name) in self.bindings.items():
            if role in values:
                graph[node]["inputs"][name] = values[role]
        return graph

    def with_checkpoint(self, name: str | None) -> Workflow:
        """The workflow drawing with checkpoint ``name`` (``COMFYUI_CHECKPOINT``), where it has a checkpoint input."""
        if not name or "checkpoint" not in self.bindings:
            return self
        node, field = self.bindings["checkpoint"]
        graph = copy.deepcopy(self.graph)
        graph[node]["inputs"][field] = name
        return Workflow(graph, self.bindings, self.source)

    def sampler(self) -> str | None:
        """The node whose ``latent_image`` is drawn on: the one the ``denoise`` binding names when it has one, else
        the graph's one KSampler (or KSamplerAdvanced); None when there is no telling."""
        bound = self.bindings.get("denoise")
        if bound is not None and "latent_image" in self.graph[bound[0]]["inputs"]:
            return bound[0]
        found = [node_id for node_id, node in self.graph.items() if node["class_type"] in SAMPLER_CLASSES]
        return found[0] if len(found) == 1 else None


def repeated(graph: Graph, sampler: str, amount: int) -> Graph | None:
    """``graph`` (a filled copy) with a RepeatLatentBatch of ``amount`` between ``sampler`` and the latent it draws
    on: one picture encoded, ``amount`` drawn from it in one prompt. None when the sampler's latent is no link."""
    link = graph[sampler]["inputs"].get("latent_image")
    if not _is_link(link):
        return None
    node = _fresh(graph)
    graph[node] = {
        "class_type": "RepeatLatentBatch",
        "inputs": {"samples": link, "amount": amount},
        "_meta": {"title": "sdbot: one picture per --n"},
    }
    graph[sampler]["inputs"]["latent_image"] = [node, 0]
    return graph


def upscale_graph(image: str, model: str, width: int, height: int, *, prefix: str = "sdbot_upscale") -> Graph:
    """The Upscale button's graph: the uploaded picture ``image`` through the upscale model ``model``
    (``COMFYUI_UPSCALE_MODEL``), then scaled to exactly ``width`` x ``height`` (whatever the model's own factor)."""
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": image}, "_meta": {"title": "Picture"}},
        "2": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": model}, "_meta": {"title": "Upscale model"}},
        "3": {
            "class_type": "ImageUpscaleWithModel",
            "inputs": {"upscale_model": ["2", 0], "image": ["1", 0]},
            "_meta": {"title": "Upscale"},
        },
        "4": {
            "class_type": "ImageScale",
            "inputs": {
                "image": ["3", 0],
                "upscale_method": UPSCALE_METHOD,
                "width": width,
                "height": height,
                "crop": "disabled",
            },
            "_meta": {"title": "To twice the sides"},
        },
        "5": {"class_type": "SaveImage", "inputs": {"filename_prefix": prefix, "images": ["4", 0]}},
    }


def load(
    path: Path | None, bindings: str | None = None, *, variable: str = "COMFYUI_WORKFLOW", img2img: bool = False
) -> Workflow:
    """The workflow at ``path`` (the shipped one when None) with its bindings: ``bindings`` when given, else
    found in the graph. Raises ``ConfigError("workflow_invalid")`` naming the variable and the reason.
    ``img2img``: an image-to-image workflow (``COMFYUI_IMG2IMG_WORKFLOW``), with its ``image`` and ``denoise``."""
    source = str(path) if path is not None else "default"
    try:
        if path is None:
            text = resources.files("bot.backends.comfyui").joinpath("default_workflow.json").read_text("utf-8")
        else:
            text = path.read_text(encoding="utf-8")
        graph = json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        reason = Msg("comfy.reason.unreadable", {"error": type(exc).__name__})
        raise invalid(variable, source, reason) from None
    if not _api_format(graph):
        raise invalid(variable, source, Msg("comfy.reason.not_api_format"))
    if bindings:
        found = parse_bindings(bindings, graph, source, img2img=img2img)
    else:
        found = discover(graph, source, variable=variable, img2img=img2img)
    return Workflow(graph, found, source)


def load_img2img(path: Path | None, bindings: str | None, text_to_image: Workflow) -> Workflow | None:
    """The image-to-image workflow: the operator's file at ``path`` (``COMFYUI_IMG2IMG_WORKFLOW``), else the one
    built from the shipped text-to-image workflow; None for an operator's own ``COMFYUI_WORKFLOW`` without one
    (what their graph draws on cannot be guessed)."""
    if path is not None:
        return load(path, bindings, variable="COMFYUI_IMG2IMG_WORKFLOW", img2img=True)
    for item in (bindings or "").split(","):
        role = item.partition("=")[0].strip()
        if role in IMG2IMG_ROLES:  # it names an input of a file that is not there: say so, rather than ignore it
            raise invalid("COMFYUI_BINDINGS", text_to_image.source, Msg("comfy.reason.img2img_role", {"role": role}))
    if text_to_image.source != "default":
        return None
    return derive_img2img(text_to_image)


def derive_img2img(workflow: Workflow) -> Workflow | None:
    """``workflow`` drawing on a picture: the EmptyLatentImage its KSampler draws on replaced by LoadImage ->
    VAEEncode (with the VAE that decodes the sampler's result), ``denoise`` the strength. None for a graph that
    is not that shape (KSamplerAdvanced has no ``denoise``)."""
    graph = copy.deepcopy(workflow.graph)
    candidates = []
    for node_id, node in graph.items():
        latent = _source(graph, node["inputs"].get("latent_image"))
        if node["class_type"] != "KSampler" or latent is None or "denoise" not in node["inputs"]:
            continue
        if graph[latent]["class_type"] == "EmptyLatentImage":
            candidates.append((node_id, latent))
    if len(candidates) != 1:
        return None
    sampler, latent = candidates[0]
    decoders = [
        node["inputs"].get("vae")
        for node in graph.values()
        if node["class_type"] == "VAEDecode" and _source(graph, node["inputs"].get("samples")) == sampler
    ]
    vae = decoders[0] if decoders and _is_link(decoders[0]) else None
    if vae is None:
        return None
    still_used = any(
        _is_link(value) and value[0] == latent
        for node_id, node in graph.items()
        if node_id != sampler
        for value in node["inputs"].values()
    )
    if not still_used:
        del graph[latent]
    load_node = _fresh(graph)
    graph[load_node] = {"class_type": "LoadImage", "inputs": {"image": ""}, "_meta": {"title": "Picture to draw from"}}
    encode_node = _fresh(graph)
    graph[encode_node] = {
        "class_type": "VAEEncode",
        "inputs": {"pixels": [load_node, 0], "vae": list(vae)},
        "_meta": {"title": "VAE Encode"},
    }
    graph[sampler]["inputs"]["latent_image"] = [encode_node, 0]
    bindings = {role: place for role, place in workflow.bindings.items() if place[0] in graph and place[0] != latent}
    bindings["image"] = (load_node, "image")
    bindings["denoise"] = (sampler, "denoise")
    return Workflow(graph, bindings, workflow.source)


def _fresh(graph: Graph) -> str:
    """A node id the graph does not use: after its highest number, as ComfyUI numbers new nodes."""
    numbers = [int(node_id) for node_id in graph if node_id.isdigit()]
    candidate = max(numbers, default=0) + 1
    while str(candidate) in graph:
        candidate += 1
    return str(candidate)


def invalid(variable: str, source: str, reason: Msg) -> ConfigError:
    return ConfigError("workflow_invalid", variable=variable, path=source, reason=reason)


def _api_format(graph: Any) -> bool:
    """ComfyUI's API format, not the editor's (which has "nodes" and "links" lists)."""
    return (
        isinstance(graph, dict)
        and bool(graph)
        and all(
            isinstance(node, dict) and isinstance(node.get("class_type"), str) and isinstance(node.get("inputs"), dict)
            for node in graph.values()
        )
    )


def _is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)


def parse_bindings(text: str, graph: Graph, source: str, *, img2img: bool = False) -> dict[str, tuple[str, str]]:
    """``prompt=6.text,seed=3.seed`` -> ``{"prompt": ("6", "text"), "seed": ("3", "seed")}``, each checked to
    name a value (not a link) of a node in ``graph``. ``image=`` and ``denoise=`` name the inputs of an
    image-to-image workflow (``img2img``), which needs both; a text-to-image one leaves them to it. The same text
    binds both workflows: an image-to-image one skips ``width``, ``height`` and ``batch`` on a node it has not (the
    text-to-image one's empty latent)."""
    out: dict[str, tuple[str, str]] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        role, sep, target = (part.strip() for part in item.partition("="))
        node, dot, name = target.rpartition(".")
        if role not in ROLES:
            reason = Msg("comfy.reason.bad_role", {"role": role, "roles": tuple(ROLES)})
            raise invalid("COMFYUI_BINDINGS", source, reason)
        if role in IMG2IMG_ROLES and not img2img:
            continue  # COMFYUI_IMG2IMG_WORKFLOW's input, checked there
        if role in LATENT_ROLES and img2img and node not in graph:
            continue  # the text-to-image workflow's empty latent, which the picture replaces here
        inputs = graph.get(node, {}).get("inputs", {}) if sep and dot else {}
        if name not in inputs or _is_link(inputs[name]):
            reason = Msg("comfy.reason.bad_binding", {"binding": item[:80]})
            raise invalid("COMFYUI_BINDINGS", source, reason)
        out[role] = (node, name)
    if "prompt" not in out:
        raise invalid("COMFYUI_BINDINGS", source, Msg("comfy.reason.no_prompt"))
    if img2img:
        _require_img2img(out, graph, "COMFYUI_BINDINGS", source)
    return out


def _require_img2img(found: Mapping[str, tuple[str, str]], graph: Graph, variable: str, source: str) -> None:
    """An image-to-image workflow must take the picture (``image``) and the strength (``denoise``)."""
    if "image" not in found:
        count = sum(1 for node in graph.values() if node["class_type"] == "LoadImage")
        raise invalid(variable, source, Msg("comfy.reason.no_image", {"count": count}))
    if "denoise" not in found:
        raise invalid(variable, source, Msg("comfy.reason.no_denoise"))


def discover(
    graph: Graph, source: str, *, variable: str = "COMFYUI_WORKFLOW", img2img: bool = False
) -> dict[str, tuple[str, str]]:
    """The bindings of a graph with one KSampler (or KSamplerAdvanced): its own inputs, the ``text`` of the nodes
    its positive and negative come from, the ``width``, ``height`` and ``batch_size`` of its latent's node, and
    a CheckpointLoaderSimple's ``ckpt_name``. An image-to-image graph (``img2img``): also the KSampler's
    ``denoise``, the one LoadImage's ``image``, and the ``amount`` of a RepeatLatentBatch the sampler draws on."""
    samplers = [node_id for node_id, node in graph.items() if node["class_type"] in SAMPLER_CLASSES]
    if len(samplers) != 1:
        reason = Msg("comfy.reason.no_sampler", {"count": len(samplers)})
        raise invalid(variable, source, reason)
    sampler = samplers[0]
    inputs = graph[sampler]["inputs"]
    out: dict[str, tuple[str, str]] = {}

    def bind(role: str, node: str, name: str) -> None:
        if name in graph[node]["inputs"] and not _is_link(graph[node]["inputs"][name]):
            out[role] = (node, name)

    seed_input = SAMPLER_CLASSES[graph[sampler]["class_type"]]
    for role, name in (("seed", seed_input), ("steps", "steps"), ("cfg", "cfg")):
        bind(role, sampler, name)
    bind("sampler", sampler, "sampler_name")
    bind("scheduler", sampler, "scheduler")
    for role, name in (("prompt", "positive"), ("negative", "negative")):
        source_node = _source(graph, inputs.get(name))
        if source_node is not None:
            bind(role, source_node, "text")
    latent = _source(graph, inputs.get("latent_image"))
    if latent is not None:
        bind("width", latent, "width")
        bind("height", latent, "height")
        bind("batch", latent, "batch_size")
        if graph[latent]["class_type"] == "RepeatLatentBatch":
            bind("batch", latent, "amount")
    loaders = [node_id for node_id, node in graph.items() if node["class_type"] == "CheckpointLoaderSimple"]
    if len(loaders) == 1:
        bind("checkpoint", loaders[0], "ckpt_name")
    if img2img:
        bind("denoise", sampler, "denoise")
        images = [node_id for node_id, node in graph.items() if node["class_type"] == "LoadImage"]
        if len(images) == 1:
            bind("image", images[0], "image")
    if "prompt" not in out:
        raise invalid(variable, source, Msg("comfy.reason.no_prompt"))
    if img2img:
        _require_img2img(out, graph, variable, source)
    if ("width" in out) != ("height" in out):
        out.pop("width", None)
        out.pop("height", None)
    return out


def _source(graph: Graph, link: Any) -> str | None:
    """The node a link ``[node_id, output]`` comes from, when it is in the graph."""
    return link[0] if _is_link(link) and link[0] in graph else None
