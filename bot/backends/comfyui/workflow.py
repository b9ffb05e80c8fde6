"""The workflow ComfyUI runs for a /draw: an API-format graph (``{node_id: {"class_type", "inputs"}}``), the
shipped SDXL text-to-image one or the operator's (``COMFYUI_WORKFLOW``), and the inputs the request fills.

Which input takes what is found in the graph (the one KSampler's seed, steps, cfg, sampler and scheduler; the
texts its positive and negative inputs come from; the size and batch of its latent) or named by the operator in
``COMFYUI_BINDINGS``: ``prompt=6.text,seed=3.seed,...``, each ``role=node.input``."""

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
}
SAMPLER_CLASSES: Mapping[str, str] = {"KSampler": "seed", "KSamplerAdvanced": "noise_seed"}


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

    def fill(self, request: DrawRequest, *, seed: int) -> Graph:
        """A copy of the graph with the request's values in their inputs."""
        values: dict[str, Any] = {
            "prompt": request.prompt,
            "negative": request.negative_prompt or "",
            "seed": seed,
            "steps": request.steps,
            "cfg": request.cfg_scale,
            "width": request.width,
            "height": request.height,
            "batch": request.n,
        }
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


def load(path: Path | None, bindings: str | None = None) -> Workflow:
    """The workflow at ``path`` (the shipped one when None) with its bindings: ``bindings`` when given, else
    found in the graph. Raises ``ConfigError("workflow_invalid")`` naming the variable and the reason."""
    source = str(path) if path is not None else "default"
    variable = "COMFYUI_WORKFLOW"
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
    found = parse_bindings(bindings, graph, source) if bindings else discover(graph, source)
    return Workflow(graph, found, source)


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


def parse_bindings(text: str, graph: Graph, source: str) -> dict[str, tuple[str, str]]:
    """``prompt=6.text,seed=3.seed`` -> ``{"prompt": ("6", "text"), "seed": ("3", "seed")}``, each checked to
    name a value (not a link) of a node in ``graph``."""
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
        inputs = graph.get(node, {}).get("inputs", {}) if sep and dot else {}
        if name not in inputs or _is_link(inputs[name]):
            reason = Msg("comfy.reason.bad_binding", {"binding": item[:80]})
            raise invalid("COMFYUI_BINDINGS", source, reason)
        out[role] = (node, name)
    if "prompt" not in out:
        raise invalid("COMFYUI_BINDINGS", source, Msg("comfy.reason.no_prompt"))
    return out


def discover(graph: Graph, source: str) -> dict[str, tuple[str, str]]:
    """The bindings of a graph with one KSampler (or KSamplerAdvanced): its own inputs, the ``text`` of the nodes
    its positive and negative come from, the ``width``, ``height`` and ``batch_size`` of its latent's node, and
    a CheckpointLoaderSimple's ``ckpt_name``."""
    samplers = [node_id for node_id, node in graph.items() if node["class_type"] in SAMPLER_CLASSES]
    if len(samplers) != 1:
        reason = Msg("comfy.reason.no_sampler", {"count": len(samplers)})
        raise invalid("COMFYUI_WORKFLOW", source, reason)
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
    loaders = [node_id for node_id, node in graph.items() if node["class_type"] == "CheckpointLoaderSimple"]
    if len(loaders) == 1:
        bind("checkpoint", loaders[0], "ckpt_name")
    if "prompt" not in out:
        raise invalid("COMFYUI_WORKFLOW", source, Msg("comfy.reason.no_prompt"))
    if ("width" in out) != ("height" in out):
        out.pop("width", None)
        out.pop("height", None)
    return out


def _source(graph: Graph, link: Any) -> str | None:
    """The node a link ``[node_id, output]`` comes from, when it is in the graph."""
    return link[0] if _is_link(link) and link[0] in graph else None
