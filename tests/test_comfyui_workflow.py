"""The ComfyUI workflow: the shipped one's inputs, an operator's found from its KSampler or named in
COMFYUI_BINDINGS, each way of being wrong a localized configuration error, and A1111 sampler names mapped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.backends.comfyui.samplers import comfy_sampler, offered
from bot.backends.comfyui.workflow import load
from bot.draw.validation import parse_request
from bot.errors import ConfigError
from bot.messages.i18n import render_error


def test_the_shipped_workflow_binds_every_role() -> None:
    workflow = load(None)
    assert workflow.bindings["prompt"] == ("6", "text") and workflow.bindings["negative"] == ("7", "text")
    assert workflow.bindings["seed"] == ("3", "seed") and workflow.bindings["batch"] == ("5", "batch_size")
    assert workflow.bindings["checkpoint"] == ("4", "ckpt_name") and workflow.unsupported == frozenset()


def test_fill_puts_the_request_in_a_copy() -> None:
    workflow = load(None).with_checkpoint("juggernautXL.safetensors")
    text = 'a cat --negative dogs --size 768x1024 --n 2 --steps 30 --cfg 6.5 --sampler "DPM++ 2M Karras"'
    request = parse_request(text)
    graph = workflow.fill(request, seed=42)
    assert graph["6"]["inputs"]["text"] == "a cat" and graph["7"]["inputs"]["text"] == "dogs"
    assert graph["5"]["inputs"] == {"width": 768, "height": 1024, "batch_size": 2}
    sampler = graph["3"]["inputs"]
    assert (sampler["seed"], sampler["steps"], sampler["cfg"]) == (42, 30, 6.5)
    assert (sampler["sampler_name"], sampler["scheduler"]) == ("dpmpp_2m", "karras")
    assert graph["4"]["inputs"]["ckpt_name"] == "juggernautXL.safetensors"
    assert workflow.graph["6"]["inputs"]["text"] == ""  # the workflow itself is untouched


def _write(tmp_path: Path, graph: object) -> Path:
    path = tmp_path / "workflow.json"
    path.write_text(json.dumps(graph), encoding="utf-8")
    return path


def _advanced() -> dict[str, object]:
    graph = json.loads(json.dumps(load(None).graph))
    graph["3"]["class_type"] = "KSamplerAdvanced"
    inputs = graph["3"]["inputs"]
    inputs["noise_seed"] = inputs.pop("seed")
    graph["5"]["class_type"] = "EmptySD3LatentImage"
    return graph


def test_an_operators_workflow_is_read_from_its_sampler(tmp_path: Path) -> None:
    workflow = load(_write(tmp_path, _advanced()))
    assert workflow.bindings["seed"] == ("3", "noise_seed") and workflow.bindings["width"] == ("5", "width")


def test_bindings_name_the_inputs_of_any_graph(tmp_path: Path) -> None:
    graph = _advanced()
    graph["10"] = json.loads(json.dumps(graph["3"]))  # a refiner: two samplers, nothing to find
    path = _write(tmp_path, graph)
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert caught.value.code == "workflow_invalid" and "COMFYUI_BINDINGS" in render_error(caught.value, "en")
    workflow = load(path, "prompt=6.text, seed=3.noise_seed, steps=10.steps")
    assert set(workflow.bindings) == {"prompt", "seed", "steps"}
    assert {"negative", "cfg", "sampler", "size"} <= workflow.unsupported and "n" not in workflow.unsupported


@pytest.mark.parametrize(
    ("content", "bindings", "said"),
    [
        ("{not json", None, "JSON"),
        ('{"nodes": [], "links": []}', None, "Export (API)"),
        (None, "prompt=6.txt", "6.txt"),
        (None, "prompt=6.clip", "6.clip"),  # a link, not a value
        (None, "prompt=6.text,colour=3.cfg", "colour"),
        (None, "seed=3.seed", "prompt"),
    ],
)
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_each_mistake_is_a_clear_error_in_both_languages(
    tmp_path: Path, content: str | None, bindings: str | None, said: str, lang: str
) -> None:
    path = tmp_path / "workflow.json"
    path.write_text(content if content is not None else json.dumps(load(None).graph), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load(path, bindings)
    text = render_error(caught.value, lang)
    assert caught.value.code == "workflow_invalid" and said in text and str(path) in text


def test_a_missing_file_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path / "nowhere.json")
    assert caught.value.variable == "COMFYUI_WORKFLOW" and "FileNotFoundError" in render_error(caught.value, "en")


@pytest.mark.parametrize(
    ("name", "pair"),
    [
        ("Euler a", ("euler_ancestral", "normal")),
        ("DPM++ 2M Karras", ("dpmpp_2m", "karras")),
        ("DPM++ 2M SDE Karras", ("dpmpp_2m_sde", "karras")),
        ("DPM2 a Karras", ("dpm_2_ancestral", "karras")),
        ("DPM++ 3M SDE Exponential", ("dpmpp_3m_sde", "exponential")),
        ("DDIM", ("ddim", "ddim_uniform")),
        ("LMS Karras", ("lms", "karras")),
    ],
)
def test_a1111_names_map_to_comfyui_pairs(name: str, pair: tuple[str, str]) -> None:
    assert comfy_sampler(name) == pair


def test_only_pairs_the_server_has_are_offered() -> None:
    names = ("Euler a", "DPM++ 2M Karras", "Made Up")
    assert offered(names, frozenset({"euler_ancestral", "dpmpp_2m"}), frozenset({"normal"})) == ("Euler a",)
