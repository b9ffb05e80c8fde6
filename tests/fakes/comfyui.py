"""A fake ComfyUI server (``python main.py --listen 127.0.0.1``), on 127.0.0.1: its HTTP API, its ``/ws`` websocket
and its one prompt worker, after ComfyUI 0.38 (Comfy-Org/ComfyUI ``server.py``, ``execution.py``, ``main.py``
``prompt_worker``, ``comfy_execution/{graph,progress,jobs}.py``, ``nodes.py``; shared/reference/backends.md §4).

Every route answers both bare and under ``/api`` (``/prompt`` and ``/api/prompt``), like the real server.

Submitting (``POST /prompt``)
    Body ``{"prompt": graph, "client_id"?, "prompt_id"?, "extra_data"?, "number"?, "front"?,
    "partial_execution_targets"?}``. The graph is ComfyUI's API format ``{node_id: {"class_type", "inputs",
    "_meta"?}}``, links ``[source_node_id, output_index]``. Checked as ``execution.validate_prompt`` does:

    - no ``prompt`` key -> 400 ``{"error": {"type": "no_prompt", "message": "No prompt provided", "details": "No
      prompt provided", "extra_info": {}}, "node_errors": {}}``;
    - ``prompt_id`` not a UUID in canonical lowercase form -> 400 ``invalid_prompt_id`` (``"prompt_id must be a
      valid UUID"``); absent or null -> a uuid4 is minted;
    - a node of a class the fake does not have -> 400 ``missing_node_type`` (``"Node '<_meta.title or class>' not
      found. The custom node may not be installed."``, ``details "Node ID '#<id>'"``, ``extra_info {node_id,
      class_type, node_title}``), ``node_errors {}``; a node without ``class_type`` too (``"... has no class_type.
      The workflow may be corrupted or a custom node is missing."``, ``class_type: null``);
    - no output node (SaveImage, PreviewImage) -> 400 ``prompt_no_outputs``;
    - then every output node's inputs, recursively through its links: ``required_input_missing``,
      ``bad_linked_input`` (a list that is not ``[node, slot]``), ``return_type_mismatch``, ``invalid_input_type``
      (``int()``/``float()`` refusing the value; ``"20"`` is accepted and stored as 20), ``value_smaller_than_min``,
      ``value_bigger_than_max``, ``value_not_in_list`` (lists longer than 20, like the samplers, read
      ``"(list of length 44)"`` and ``input_config: null``), ``custom_validation_failed`` (LoadImage's
      ``VALIDATE_INPUTS``: ``"image - Invalid image file: <name>"``), ``dependency_cycle``. A link to a node that is
      not in the graph, or to an output index the node does not have, is *not* ``bad_linked_input`` on the real
      server: the lookup raises, and the answer is ``exception_during_validation`` (on the output node itself) or
      ``exception_during_inner_validation`` (filed under the node that holds the bad link), with the Python
      exception's words (``"'99'"``, ``"tuple index out of range"``). When no output survives: 400
      ``{"error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation",
      "details": "<the output nodes' own reasons>", "extra_info": {}}, "node_errors": {node_id: {"errors": [...],
      "dependent_outputs": [...], "class_type"}}}``. When some outputs survive, the prompt runs those and the 200
      answer carries the others' ``node_errors``.
    - a body that is not JSON, or a non-empty graph that is not an object -> 500 (aiohttp's plain-text page), as the
      real handler crashes on them.

    Success -> 200 ``{"prompt_id", "number", "node_errors": {}}``. ``number`` counts every POST whose body parses
    (refused ones too) from 0; ``front: true`` negates it; an explicit ``number`` is used as a float. The queue is a
    heap on ``(number, prompt_id)``, run by ONE worker, one prompt at a time. ``extra_data`` gets ``client_id`` and
    ``create_time`` (ms); ``auth_token_comfy_org`` / ``api_key_comfy_org`` are kept out of the queue and history.

Running (what the worker does, in this order)
    Broadcast ``status`` (queue changed), then to the submitting ``client_id`` only (nothing at all without one):
    ``execution_start {prompt_id, timestamp}``, ``execution_cached {nodes, prompt_id, timestamp}``, then the nodes in
    ComfyUI's ``ExecutionList`` order (4, 5, 7, 6, 3, 8, 9 for the template graph): ``progress_state`` (running),
    ``executing {node, display_node, prompt_id}``; a sampler sends per step ``progress_state``, ``progress {value,
    max, prompt_id, node}`` and a binary preview (``>I`` 1 PREVIEW_IMAGE, ``>I`` 1 JPEG, JPEG bytes; or ``>I`` 4
    PREVIEW_IMAGE_WITH_METADATA, ``>I`` length, JSON metadata, JPEG, to a client that sent ``feature_flags`` with
    ``supports_preview_metadata: true``), sleeping ``step_delay`` per step; ImageUpscaleWithModel sends a
    ``progress`` per 512-px tile; an output node sends ``executed {node, display_node, output: {"images":
    [{filename, subfolder, type}]}, prompt_id}``; then ``progress_state`` (finished). After the last node:
    ``execution_success {prompt_id, timestamp}``. Then the history entry is stored, ``status`` is broadcast, and
    last ``executing {node: null, prompt_id}``: a client that sees it finds the entry in ``/history``.
    (``progress``, ``progress_state`` and previews of a prompt without ``client_id`` go to every socket, as on the
    real server.)

    Node outputs are cached by input signature across prompts, as ComfyUI's default cache does (``cache=False`` turns
    it off): resubmitting an identical graph runs nothing, ``execution_cached`` lists every node, the output node is
    ``executed`` again with the *same* file names, and the history entry points at those files. A new seed re-runs
    the sampler and what follows, the loaders stay cached (no ``executing`` for them).

    What the nodes make: EmptyLatentImage ``width``/``height`` (rounded down to multiples of 8, as the latent space
    does) x ``batch_size``; LoadImage the uploaded picture's size, VAEEncode rounds it down to multiples of 8;
    KSampler (and KSamplerAdvanced) picture i of the batch is drawn with ``seed + i`` (``noise_seed + i``) and
    runs ``steps`` steps (0 when ``denoise`` is 0); RepeatLatentBatch repeats the batch ``amount`` times;
    ImageUpscaleWithModel multiplies by the model's scale (``x2``, ``x4``, ``2x``, ``4x`` in its name, else 4);
    ImageScaleBy by ``scale_by`` (``round``); ImageScale to ``width`` x ``height`` (a 0 side keeps the ratio, both 0
    keep the size); SaveImage writes
    ``<prefix>_<counter:05>_.png`` (counter after the highest existing one for that prefix; a ``dir/prefix`` prefix
    saves in subfolder ``dir``; ``%width%``, ``%height%``, ``%year%``... and ``%batch_num%`` are expanded; a prefix
    escaping the output folder fails the run with ComfyUI's ``Exception``), real PNGs (``tests.fakes.images.
    png_bytes(w, h, seed)``) carrying the graph as a ``prompt`` tEXt chunk (and ``extra_data.extra_pnginfo`` keys)
    as ComfyUI's do; PreviewImage saves ``ComfyUI_temp_xxxxx_<counter>_.png`` as type ``temp``.

Control
    - ``POST /interrupt``, optional body ``{"prompt_id"}``: a global interrupt without one (or with an empty or
      non-JSON body); with one, only when that prompt is the one running. The running prompt stops at its next
      node or sampler step: ``execution_interrupted {prompt_id, node_id, node_type, executed, timestamp}``, then
      ``status``, then ``executing`` null; its history entry has ``status_str "error"``, ``completed false``, and the
      message in ``messages``. An interrupt while nothing runs is forgotten when the next prompt starts. 200, empty.
    - ``POST /queue`` ``{"clear": true}`` empties the pending queue, ``{"delete": [prompt_id...]}`` takes those off it
      (never the running one); 200, empty. Deleted prompts never get a history entry nor any message.
    - ``GET /queue`` -> ``{"queue_running": [[number, prompt_id, graph, extra_data, outputs]], "queue_pending":
      [...]}`` (pending in heap order); ``GET /prompt`` -> ``{"exec_info": {"queue_remaining": N}}``.
    - ``GET /history/{id}`` -> ``{id: {"prompt": [number, id, graph, extra_data, outputs], "outputs": {node:
      {"images": [...]}}, "status": {"status_str": "success"|"error", "completed", "messages": [[event, data]...]},
      "meta": {node: {node_id, display_node, parent_node, real_node_id}}}}``, or ``{}`` (unknown or not finished);
      ``GET /history?max_items=&offset=``; ``POST /history`` ``{"clear"}``/``{"delete"}``. ``POST /free``.

Files
    - ``GET /view?filename=&subfolder=&type=output|input|temp`` -> the bytes, ``Content-Type`` from the name
      (``image/png``), ``Content-Disposition: filename="..."``; 400 for an empty name, one starting with ``/`` or
      containing ``..``, or an unknown type; 403 when ``subfolder`` leaves the folder; 404 when missing (or no
      ``filename``). ``preview=webp;90`` / ``jpeg;85`` re-encodes, ``channel=rgb|a`` too.
    - ``POST /upload/image`` multipart (``image`` file part, ``overwrite`` "true"/"1", ``type`` input|temp|output,
      ``subfolder``) -> ``{"name", "subfolder", "type"}``; a name already taken by other bytes is renamed
      ``name (1).png``, by identical bytes reused, replaced with ``overwrite``; no ``image`` file part -> 400; a
      name leaving the folder -> 400; an unknown ``type`` -> 500 (ComfyUI crashes on it). Uploaded pictures pass
      LoadImage's validation (``name``, ``sub/name``, ``name [input]``); those at the top of the input folder are in
      its combo list.

Introspection
    ``GET /object_info`` and ``/object_info/{class}`` (``{}`` for an unknown class): KSampler, KSamplerAdvanced,
    CheckpointLoaderSimple, EmptyLatentImage, CLIPTextEncode, VAEDecode, VAEEncode, SaveImage, PreviewImage,
    LoadImage, ImageScaleBy, ImageScale, RepeatLatentBatch in the legacy node shape (combos ``[[values], {...}]``),
    UpscaleModelLoader and ImageUpscaleWithModel in the V3 nodes' shape (``"model_name": ["COMBO", {"multiselect":
    false, "options": [...]}]``, every NodeInfoV1 field present, nulls included), as the real server mixes them.
    ``GET /system_stats``, ``/features``, ``/models``, ``/models/{folder}``, ``/embeddings``, ``/extensions``.

    WebSocket ``GET /ws?clientId=ID`` (a hex id is minted without one): first ``status`` with ``sid``; a first
    client message ``{"type": "feature_flags", "data": {...}}`` is answered with the server's ``feature_flags``;
    ``status {"status": {"exec_info": {"queue_remaining"}}}`` (no ``sid``) is broadcast whenever the queue changes
    (twice for a ``delete`` that empties it, as the real one does). A client reconnecting with the running
    prompt's ``clientId`` gets ``executing {node}`` (no ``prompt_id``).

    Origin check (``require_origin_match``, the real default without ``--enable-cors-header``): 403, empty, when
    ``Sec-Fetch-Site: cross-site``, or when a loopback ``Host`` and the ``Origin`` name different hosts (ports
    compared only when both carry one). A refused request reaches no handler (no ``generate_calls`` entry, no
    fault used; it is still in ``requests``).

Usage::

    async with FakeComfyUI(step_delay=0.01) as fake:
        fake.push_execution_error()                      # the next prompt runs out of memory in its KSampler
        ...  POST {fake.url}/prompt {"prompt": txt2img_graph(seed=7), "client_id": cid}, read ws {fake.url}/ws
        fake.generate_calls[-1].body["prompt"]["3"]["inputs"]["seed"]
        fake.file("ComfyUI_00001_.png")                  # bytes in the output store

Constructor: ``FakeComfyUI(checkpoints=("sd_xl_base_1.0.safetensors",), upscale_models=("RealESRGAN_x2.pth",),
step_delay=0.0, require_origin_match=True, cache=True, previews=True, progress_state=True)``.
``progress_state=False`` leaves out the ``progress_state`` messages (older builds); ``previews=False`` sends no binary
frames (the real default ``--preview-method none`` for API clients sends none either).

Graph helpers: ``txt2img_graph(...)`` is backends.md §4.6's template (nodes "3" KSampler, "4"
CheckpointLoaderSimple, "5" EmptyLatentImage, "6"/"7" CLIPTextEncode, "8" VAEDecode, "9" SaveImage);
``img2img_graph(image, denoise=0.6, ...)`` swaps "5" for "10" LoadImage -> "11" VAEEncode; ``with_upscale(graph,
model_name)`` adds "12" UpscaleModelLoader -> "13" ImageUpscaleWithModel before the SaveImage;
``with_scale_by(graph, scale_by)`` adds "14" ImageScaleBy there.

Planned faults (FIFO, one per ``POST /prompt``, taken before validation; common ones in ``tests.fakes.image_api``:
``push_delay``, ``push_disconnect``, ``push_malformed_json``, ``push_trickle``, ``push_response`` are played at
submission; ``push_not_an_image``, ``push_bomb``, ``push_wrong_size``, ``push_truncated``, ``push_corrupt_pixels``,
``push_count`` change the files that prompt's SaveImage writes):

- ``push_execution_error(message=OOM_MESSAGE, exception_type="torch.OutOfMemoryError", node_type="KSampler",
  at_step=0)``: the prompt is accepted, then the first ``node_type`` node it really runs (not a cached one) fails
  after ``at_step`` sampler steps: ``execution_error {prompt_id, node_id, node_type, executed, exception_message,
  exception_type, traceback, current_inputs, current_outputs, timestamp}`` (an OOM's message gets ComfyUI's "TIPS"
  paragraph), then ``status`` and ``executing`` null; history ``status_str "error"``, ``completed false``.
- ``push_hang()``: the prompt's sampler stalls before its first step until it is interrupted (or the fake stops).

Recorded: ``generate_calls`` (every ``POST /prompt``), ``prompts`` (prompt_id -> the graph as queued, after
ComfyUI's conversions), ``interrupts`` (each ``POST /interrupt``'s JSON object, None for no body), ``uploads``
(names answered by ``/upload/image``), ``started`` (prompt ids in the order the worker began them), ``history``,
``ws_clients`` (sid per websocket connection), ``requests`` (method, path).

A stopped fake that is started again is a restarted ComfyUI: same port, same files, empty queue and history, cold
cache, no sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import hashlib
import heapq
import io
import ipaddress
import json
import logging
import mimetypes
import posixpath
import re
import struct
import time
import urllib.parse
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

from aiohttp import WSCloseCode, WSMsgType, web
from PIL import Image

from tests.fakes.image_api import (
    BOMB,
    CORRUPT_PIXELS,
    COUNT,
    NOT_IMAGE,
    TRUNCATED,
    WRONG_SIZE,
    Fault,
    ImageApiFake,
)
from tests.fakes.images import PNG_SIGNATURE, png_bytes

log = logging.getLogger(__name__)

VERSION = "0.38.1"
# comfy/samplers.py KSAMPLER_NAMES + ["ddim", "uni_pc", "uni_pc_bh2"], and SCHEDULER_HANDLERS (backends.md §4.6).
SAMPLERS: tuple[str, ...] = (
    "euler",
    "euler_cfg_pp",
    "euler_ancestral",
    "euler_ancestral_cfg_pp",
    "heun",
    "heunpp2",
    "exp_heun_2_x0",
    "exp_heun_2_x0_sde",
    "dpm_2",
    "dpm_2_ancestral",
    "lms",
    "dpm_fast",
    "dpm_adaptive",
    "dpmpp_2s_ancestral",
    "dpmpp_2s_ancestral_cfg_pp",
    "dpmpp_sde",
    "dpmpp_sde_gpu",
    "dpmpp_2m",
    "dpmpp_2m_cfg_pp",
    "dpmpp_2m_sde",
    "dpmpp_2m_sde_gpu",
    "dpmpp_2m_sde_heun",
    "dpmpp_2m_sde_heun_gpu",
    "dpmpp_3m_sde",
    "dpmpp_3m_sde_gpu",
    "ddpm",
    "lcm",
    "ipndm",
    "ipndm_v",
    "deis",
    "res_multistep",
    "res_multistep_cfg_pp",
    "res_multistep_ancestral",
    "res_multistep_ancestral_cfg_pp",
    "gradient_estimation",
    "gradient_estimation_cfg_pp",
    "er_sde",
    "seeds_2",
    "seeds_3",
    "sa_solver",
    "sa_solver_pece",
    "ddim",
    "uni_pc",
    "uni_pc_bh2",
)
SCHEDULERS: tuple[str, ...] = (
    "simple",
    "sgm_uniform",
    "karras",
    "exponential",
    "ddim_uniform",
    "beta",
    "normal",
    "linear_quadratic",
    "kl_optimal",
)
UPSCALE_METHODS = ("nearest-exact", "bilinear", "area", "bicubic", "lanczos")
CROP_METHODS = ("disabled", "center")
MAX_RESOLUTION = 16384
SEED_MAX = 0xFFFFFFFFFFFFFFFF
MAXIMUM_HISTORY_SIZE = 10000
MAX_UPLOAD_SIZE = 64 * 1024 * 1024  # what tests.fakes.server lets through (ComfyUI's default is 100 MiB)
SENSITIVE_EXTRA_DATA_KEYS = ("auth_token_comfy_org", "api_key_comfy_org")
DIRS = {"output": "/ComfyUI/output", "input": "/ComfyUI/input", "temp": "/ComfyUI/temp"}
PREVIEW_IMAGE = 1
PREVIEW_IMAGE_WITH_METADATA = 4
FEATURE_FLAGS: dict[str, Any] = {
    "supports_preview_metadata": True,
    "supports_model_type_tags": True,
    "max_upload_size": MAX_UPLOAD_SIZE,
    "extension": {"manager": {"supports_v4": True}},
    "node_replacements": True,
    "assets": False,  # as with --disable-assets: no "asset" object in upload answers, no blake3: names in /view
}
MODEL_FOLDERS = (
    "checkpoints",
    "configs",
    "loras",
    "vae",
    "text_encoders",
    "diffusion_models",
    "clip_vision",
    "style_models",
    "embeddings",
    "diffusers",
    "vae_approx",
    "controlnet",
    "gligen",
    "upscale_models",
    "latent_upscale_models",
    "custom_nodes",
    "hypernetworks",
    "photomaker",
    "classifiers",
    "model_patches",
    "audio_encoders",
)
OOM_MESSAGE = (
    "CUDA out of memory. Tried to allocate 2.50 GiB. GPU 0 has a total capacity of 23.64 GiB of which 1.02 GiB is "
    "free. Of the allocated memory 20.55 GiB is allocated by PyTorch, and 1.51 GiB is reserved by PyTorch but "
    "unallocated. If reserved but unallocated memory is large try setting "
    "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation."
)
OOM_TIPS = (
    "This error means you ran out of memory on your GPU.\n\nTIPS: If the workflow worked before you might have "
    "accidentally set the batch_size to a large number."
)
SERVER_ERROR_TEXT = "500 Internal Server Error\n\nServer got itself in trouble"

# Provider-specific fault kinds.
EXECUTION_ERROR = "execution_error"
HANG = "hang"
IMAGE_FAULTS = frozenset({NOT_IMAGE, BOMB, WRONG_SIZE, TRUNCATED, CORRUPT_PIXELS, COUNT})

_EXECUTE_TRACEBACK = [
    '  File "/ComfyUI/execution.py", line 515, in execute\n    output_data, output_ui, has_subgraph, '
    "has_pending_tasks = await get_output_data(prompt_id, unique_id, obj, input_data_all, "
    "execution_block_cb=execution_block_cb, pre_execute_cb=pre_execute_cb, v3_data=v3_data)\n",
    '  File "/ComfyUI/execution.py", line 329, in get_output_data\n    return_values = await '
    "_async_map_node_over_list(prompt_id, unique_id, obj, input_data_all, obj.FUNCTION, allow_interrupt=True, "
    "execution_block_cb=execution_block_cb, pre_execute_cb=pre_execute_cb, v3_data=v3_data)\n",
    '  File "/ComfyUI/execution.py", line 303, in _async_map_node_over_list\n    result = f(**inputs)\n',
]
_VALIDATE_TRACEBACK = [
    "  File \"/ComfyUI/execution.py\", line 1158, in validate_inputs\n    o_class_type = prompt[o_id]['class_type']\n"
]


# -- graph helpers ---------------------------------------------------------------------------------------------


def txt2img_graph(
    *,
    text: str = "a lighthouse at dusk",
    negative: str = "",
    seed: int = 0,
    steps: int = 20,
    cfg: float = 8.0,
    sampler_name: str = "euler",
    scheduler: str = "normal",
    denoise: float = 1.0,
    width: int = 512,
    height: int = 512,
    batch_size: int = 1,
    ckpt_name: str = "sd_xl_base_1.0.safetensors",
    filename_prefix: str = "ComfyUI",
) -> dict[str, Any]:
    """backends.md §4.6's API-format text-to-image graph (COMFY ``script_examples/basic_api_example.py``)."""
    return {
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": seed,
                "steps": steps,
                "cfg": cfg,
                "sampler_name": sampler_name,
                "scheduler": scheduler,
                "denoise": denoise,
                "model": ["4", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
            },
            "_meta": {"title": "KSampler"},
        },
        "4": {
            "class_type": "CheckpointLoaderSimple",
            "inputs": {"ckpt_name": ckpt_name},
            "_meta": {"title": "Load Checkpoint"},
        },
        "5": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": width, "height": height, "batch_size": batch_size},
            "_meta": {"title": "Empty Latent Image"},
        },
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": text, "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": negative, "clip": ["4", 1]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": filename_prefix, "images": ["8", 0]}},
    }


def img2img_graph(image: str, *, denoise: float = 0.6, **options: Any) -> dict[str, Any]:
    """The template with its empty latent replaced by LoadImage ("10") -> VAEEncode ("11"), ``denoise`` < 1."""
    graph = txt2img_graph(denoise=denoise, **options)
    del graph["5"]
    graph["10"] = {"class_type": "LoadImage", "inputs": {"image": image}}
    graph["11"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["10", 0], "vae": ["4", 2]}}
    graph["3"]["inputs"]["latent_image"] = ["11", 0]
    return graph


def _save_node(graph: dict[str, Any]) -> dict[str, Any]:
    return next(node for node in graph.values() if node["class_type"] in ("SaveImage", "PreviewImage"))


def with_upscale(graph: dict[str, Any], model_name: str = "RealESRGAN_x2.pth") -> dict[str, Any]:
    """``graph`` with UpscaleModelLoader ("12") -> ImageUpscaleWithModel ("13") between its images and SaveImage."""
    graph = copy.deepcopy(graph)
    save = _save_node(graph)
    graph["12"] = {"class_type": "UpscaleModelLoader", "inputs": {"model_name": model_name}}
    graph["13"] = {
        "class_type": "ImageUpscaleWithModel",
        "inputs": {"upscale_model": ["12", 0], "image": save["inputs"]["images"]},
    }
    save["inputs"]["images"] = ["13", 0]
    return graph


def with_scale_by(graph: dict[str, Any], scale_by: float, method: str = "lanczos") -> dict[str, Any]:
    """``graph`` with ImageScaleBy ("14") between its images and SaveImage."""
    graph = copy.deepcopy(graph)
    save = _save_node(graph)
    graph["14"] = {
        "class_type": "ImageScaleBy",
        "inputs": {"image": save["inputs"]["images"], "upscale_method": method, "scale_by": scale_by},
    }
    save["inputs"]["images"] = ["14", 0]
    return graph


# -- node specs ------------------------------------------------------------------------------------------------


@dataclass
class _Spec:
    """One node class: what INPUT_TYPES, RETURN_TYPES... say, enough for /object_info and validation."""

    name: str
    display_name: str
    category: str
    required: dict[str, list[Any]]
    returns: tuple[str, ...] = ()
    hidden: dict[str, str] = field(default_factory=dict)
    description: str = ""
    output_tooltips: tuple[str, ...] | None = None
    output_node: bool = False
    v3: bool = False
    python_module: str = "nodes"
    search_aliases: tuple[str, ...] = ()
    validate_args: tuple[str, ...] = ()  # VALIDATE_INPUTS's arguments (argspec.args, "s" included)

    def input_types(self) -> dict[str, Any]:
        out: dict[str, Any] = {"required": self.required}
        if self.hidden:
            out["hidden"] = self.hidden
        return out

    def info(self) -> dict[str, Any]:
        """The node's ``/object_info`` entry: server.py's node_info, or NodeInfoV1 for a V3 node."""
        inputs = self.input_types()
        if self.v3:
            return {
                "input": inputs,
                "input_order": {key: list(value) for key, value in inputs.items()},
                "is_input_list": False,
                "output": list(self.returns),
                "output_is_list": [False] * len(self.returns),
                "output_name": list(self.returns),
                "output_tooltips": [None] * len(self.returns),
                "output_matchtypes": None,
                "name": self.name,
                "display_name": self.display_name,
                "description": self.description,
                "python_module": self.python_module,
                "category": self.category,
                "output_node": self.output_node,
                "deprecated": False,
                "experimental": False,
                "dev_only": False,
                "api_node": False,
                "price_badge": None,
                "search_aliases": list(self.search_aliases),
                "essentials_category": None,
                "has_intermediate_output": False,
            }
        info: dict[str, Any] = {
            "input": inputs,
            "input_order": {key: list(value) for key, value in inputs.items()},
            "is_input_list": False,
            "output": list(self.returns),
            "output_is_list": [False] * len(self.returns),
            "output_name": list(self.returns),
            "name": self.name,
            "display_name": self.display_name,
            "description": self.description,
            "python_module": self.python_module,
            "category": self.category,
            "output_node": self.output_node,
            "has_intermediate_output": False,
        }
        if self.output_tooltips is not None:
            info["output_tooltips"] = list(self.output_tooltips)
        info["search_aliases"] = list(self.search_aliases)
        return info


def _ksampler_inputs(advanced: bool) -> dict[str, list[Any]]:
    if advanced:
        return {
            "model": ["MODEL"],
            "add_noise": [["enable", "disable"]],
            "noise_seed": ["INT", {"default": 0, "min": 0, "max": SEED_MAX, "control_after_generate": True}],
            "steps": ["INT", {"default": 20, "min": 1, "max": 10000}],
            "cfg": ["FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01}],
            "sampler_name": [list(SAMPLERS)],
            "scheduler": [list(SCHEDULERS)],
            "positive": ["CONDITIONING"],
            "negative": ["CONDITIONING"],
            "latent_image": ["LATENT"],
            "start_at_step": ["INT", {"default": 0, "min": 0, "max": 10000}],
            "end_at_step": ["INT", {"default": 10000, "min": 0, "max": 10000}],
            "return_with_leftover_noise": [["disable", "enable"]],
        }
    return {
        "model": ["MODEL", {"tooltip": "The model used for denoising the input latent."}],
        "seed": [
            "INT",
            {
                "default": 0,
                "min": 0,
                "max": SEED_MAX,
                "control_after_generate": True,
                "tooltip": "The random seed used for creating the noise.",
            },
        ],
        "steps": [
            "INT",
            {"default": 20, "min": 1, "max": 10000, "tooltip": "The number of steps used in the denoising process."},
        ],
        "cfg": [
            "FLOAT",
            {
                "default": 8.0,
                "min": 0.0,
                "max": 100.0,
                "step": 0.1,
                "round": 0.01,
                "tooltip": "The Classifier-Free Guidance scale balances creativity and adherence to the prompt. "
                "Higher values result in images more closely matching the prompt however too high values will "
                "negatively impact quality.",
            },
        ],
        "sampler_name": [
            list(SAMPLERS),
            {
                "tooltip": "The algorithm used when sampling, this can affect the quality, speed, and style of the "
                "generated output."
            },
        ],
        "scheduler": [
            list(SCHEDULERS),
            {"tooltip": "The scheduler controls how noise is gradually removed to form the image."},
        ],
        "positive": [
            "CONDITIONING",
            {"tooltip": "The conditioning describing the attributes you want to include in the image."},
        ],
        "negative": [
            "CONDITIONING",
            {"tooltip": "The conditioning describing the attributes you want to exclude from the image."},
        ],
        "latent_image": ["LATENT", {"tooltip": "The latent image to denoise."}],
        "denoise": [
            "FLOAT",
            {
                "default": 1.0,
                "min": 0.0,
                "max": 1.0,
                "step": 0.01,
                "tooltip": "The amount of denoising applied, lower values will maintain the structure of the "
                "initial image allowing for image to image sampling.",
            },
        ],
    }


def _save_image_inputs() -> dict[str, list[Any]]:
    return {
        "images": ["IMAGE", {"tooltip": "The images to save."}],
        "filename_prefix": [
            "STRING",
            {
                "default": "ComfyUI",
                "tooltip": "The prefix for the file to save. This may include formatting information such as "
                "%date:yyyy-MM-dd% or %Empty Latent Image.width% to include values from nodes.",
            },
        ],
    }


def _specs(checkpoints: list[str], upscale_models: list[str], input_files: list[str]) -> dict[str, _Spec]:
    hidden = {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}
    size = {"min": 16, "max": MAX_RESOLUTION, "step": 8}
    specs = [
        _Spec(
            "KSampler",
            "KSampler",
            "sampling",
            _ksampler_inputs(False),
            ("LATENT",),
            description="Uses the provided model, positive and negative conditioning to denoise the latent image.",
            output_tooltips=("The denoised latent.",),
        ),
        _Spec("KSamplerAdvanced", "KSampler (Advanced)", "sampling", _ksampler_inputs(True), ("LATENT",)),
        _Spec(
            "CheckpointLoaderSimple",
            "Load Checkpoint",
            "loaders",
            {"ckpt_name": [list(checkpoints), {"tooltip": "The name of the checkpoint (model) to load."}]},
            ("MODEL", "CLIP", "VAE"),
            description="Loads a diffusion model checkpoint, diffusion models are used to denoise latents.",
            output_tooltips=(
                "The model used for denoising latents.",
                "The CLIP model used for encoding text prompts.",
                "The VAE model used for encoding and decoding images to and from latent space.",
            ),
        ),
        _Spec(
            "EmptyLatentImage",
            "Empty Latent Image",
            "latent",
            {
                "width": ["INT", {"default": 512, **size, "tooltip": "The width of the latent images in pixels."}],
                "height": ["INT", {"default": 512, **size, "tooltip": "The height of the latent images in pixels."}],
                "batch_size": [
                    "INT",
                    {"default": 1, "min": 1, "max": 4096, "tooltip": "The number of latent images in the batch."},
                ],
            },
            ("LATENT",),
            description="Create a new batch of empty latent images to be denoised via sampling.",
            output_tooltips=("The empty latent image batch.",),
        ),
        _Spec(
            "CLIPTextEncode",
            "CLIP Text Encode (Prompt)",
            "conditioning",
            {
                "text": ["STRING", {"multiline": True, "dynamicPrompts": True, "tooltip": "The text to be encoded."}],
                "clip": ["CLIP", {"tooltip": "The CLIP model used for encoding the text."}],
            },
            ("CONDITIONING",),
            description="Encodes a text prompt using a CLIP model into an embedding that can be used to guide the "
            "diffusion model towards generating specific images.",
            output_tooltips=("A conditioning containing the embedded text used to guide the diffusion model.",),
        ),
        _Spec(
            "VAEDecode",
            "VAE Decode",
            "latent",
            {
                "samples": ["LATENT", {"tooltip": "The latent to be decoded."}],
                "vae": ["VAE", {"tooltip": "The VAE model used for decoding the latent."}],
            },
            ("IMAGE",),
            description="Decodes latent images back into pixel space images.",
            output_tooltips=("The decoded image.",),
        ),
        _Spec("VAEEncode", "VAE Encode", "latent", {"pixels": ["IMAGE"], "vae": ["VAE"]}, ("LATENT",)),
        _Spec(
            "SaveImage",
            "Save Image",
            "image",
            _save_image_inputs(),
            hidden=hidden,
            description="Saves the input images to your ComfyUI output directory.",
            output_node=True,
        ),
        _Spec(
            "PreviewImage",
            "Preview Image",
            "image",
            {"images": ["IMAGE"]},
            hidden=hidden,
            description="Saves the input images to your ComfyUI output directory.",
            output_node=True,
        ),
        _Spec(
            "LoadImage",
            "Load Image",
            "image",
            {"image": [sorted(input_files), {"image_upload": True}]},
            ("IMAGE", "MASK"),
            validate_args=("s", "image"),
        ),
        _Spec(
            "ImageScaleBy",
            "Upscale Image By",
            "image/upscaling",
            {
                "image": ["IMAGE"],
                "upscale_method": [list(UPSCALE_METHODS)],
                "scale_by": ["FLOAT", {"default": 1.0, "min": 0.01, "max": 8.0, "step": 0.01}],
            },
            ("IMAGE",),
        ),
        _Spec(
            "ImageScale",
            "Upscale Image",
            "image/upscaling",
            {
                "image": ["IMAGE"],
                "upscale_method": [list(UPSCALE_METHODS)],
                "width": ["INT", {"default": 512, "min": 0, "max": MAX_RESOLUTION, "step": 1}],
                "height": ["INT", {"default": 512, "min": 0, "max": MAX_RESOLUTION, "step": 1}],
                "crop": [list(CROP_METHODS)],
            },
            ("IMAGE",),
        ),
        _Spec(
            "RepeatLatentBatch",
            "Repeat Latent Batch",
            "latent/batch",
            {"samples": ["LATENT"], "amount": ["INT", {"default": 1, "min": 1, "max": 64}]},
            ("LATENT",),
        ),
        _Spec(
            "UpscaleModelLoader",
            "Load Upscale Model",
            "model/loaders",
            {"model_name": ["COMBO", {"multiselect": False, "options": list(upscale_models)}]},
            ("UPSCALE_MODEL",),
            v3=True,
            python_module="comfy_extras.nodes_upscale_model",
        ),
        _Spec(
            "ImageUpscaleWithModel",
            "Upscale Image (using Model)",
            "image/upscaling",
            {"upscale_model": ["UPSCALE_MODEL", {}], "image": ["IMAGE", {}]},
            ("IMAGE",),
            v3=True,
            python_module="comfy_extras.nodes_upscale_model",
            search_aliases=(
                "upscale",
                "upscaler",
                "upsc",
                "enlarge image",
                "super resolution",
                "hires",
                "superres",
                "increase resolution",
            ),
        ),
    ]
    return {spec.name: spec for spec in specs}


def _input_info(class_inputs: dict[str, Any], name: str) -> tuple[Any, str | None, dict[str, Any]]:
    """comfy_execution/graph.py get_input_info: (input type, category, extra info)."""
    for category in ("required", "optional"):
        section = class_inputs.get(category, {})
        if name in section:
            entry = section[name]
            return entry[0], category, entry[1] if len(entry) > 1 else {}
    if name in class_inputs.get("hidden", {}):
        return class_inputs["hidden"][name], "hidden", {}
    return None, None, {}


def _validate_node_input(received: Any, wanted: Any) -> bool:
    """comfy_execution/validation.py validate_node_input, non-strict."""
    if received == wanted:
        return True
    if not isinstance(received, str) or not isinstance(wanted, str):
        return False
    return bool({t.strip() for t in received.split(",")} & {t.strip() for t in wanted.split(",")})


def _is_link(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int | float)
        and not isinstance(value[1], bool)
    )


_CONVERSIONS: dict[str, Callable[[Any], Any]] = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}


def _error(kind: str, message: str, details: str, **extra_info: Any) -> dict[str, Any]:
    """One of ComfyUI's error objects (top-level ``error`` and the entries of ``node_errors[...]["errors"]``)."""
    return {"type": kind, "message": message, "details": details, "extra_info": extra_info}


def _full_type_name(klass: type) -> str:
    module = klass.__module__
    return klass.__qualname__ if module == "builtins" else f"{module}.{klass.__qualname__}"


def _format_value(value: Any) -> Any:
    if value is None or isinstance(value, int | float | bool | str):
        return value
    return str(value)


# -- values flowing through a graph ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Opaque:
    """A model, CLIP, VAE, conditioning or mask: only its printed form matters (error reports)."""

    text: str
    scale: int = 1  # an upscale model's factor

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class _Pic:
    width: int
    height: int
    seed: int


@dataclass(frozen=True)
class _Images:
    pics: tuple[_Pic, ...]

    def __str__(self) -> str:
        return "tensor([[[[0.5176, 0.4941, 0.4627],\n          ...,\n          [0.3059, 0.2784, 0.2510]]]])"


@dataclass(frozen=True)
class _Latent:
    width: int
    height: int
    seeds: tuple[int, ...]  # the picture each batch entry decodes to

    def __str__(self) -> str:
        return "{'samples': tensor([[[[0., 0., 0.,  ..., 0., 0., 0.]]]])}"


def _pointer(kind: str, salt: str) -> str:
    return f"<{kind} object at 0x7f{zlib.crc32(salt.encode()) & 0xFFFFFFFFFF:010x}>"


class _Interrupted(Exception):
    def __init__(self, node_id: str) -> None:
        super().__init__(node_id)
        self.node_id = node_id


class _NodeFailure(Exception):
    """An exception inside a node: what execution.execute reports as execution_error."""

    def __init__(self, exception_type: str, message: str, traceback: list[str] | None = None) -> None:
        super().__init__(message)
        self.exception_type = exception_type
        self.message = message
        self.traceback = list(_EXECUTE_TRACEBACK if traceback is None else traceback)
        self.node_id = ""
        self.current_inputs: dict[str, list[Any]] = {}


class _ServerCrash(Exception):
    """Where the real handler raises: aiohttp answers 500."""


def _server_error() -> web.Response:
    return web.Response(status=500, text=SERVER_ERROR_TEXT)


# -- queue and runs --------------------------------------------------------------------------------------------


@dataclass
class _Job:
    number: int | float
    prompt_id: str
    prompt: dict[str, Any]
    extra_data: dict[str, Any]
    outputs: list[str]
    fault: Fault | None = None

    def item(self) -> list[Any]:
        """The queue tuple ComfyUI shows in /queue and keeps in history (sensitive data left out)."""
        return [self.number, self.prompt_id, self.prompt, self.extra_data, self.outputs]


@dataclass
class _CacheEntry:
    outputs: tuple[Any, ...]
    ui: dict[str, Any] | None


@dataclass
class _Run:
    job: _Job
    client_id: Any
    messages: list[list[Any]] = field(default_factory=list)
    executed: list[str] = field(default_factory=list)
    outputs: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    ui_outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    progress: dict[str, dict[str, Any]] = field(default_factory=dict)
    cached_nodes: list[str] = field(default_factory=list)
    success: bool = True
    fault_played: bool = False

    @property
    def prompt_id(self) -> str:
        return self.job.prompt_id


class _ExecutionList:
    """comfy_execution/graph.py ExecutionList: a topological dissolve from the output nodes, cached nodes left out,
    the next node picked as ux_friendly_pick_node does (outputs first, then what feeds them)."""

    def __init__(
        self, prompt: dict[str, Any], is_output: Callable[[str], bool], is_cached: Callable[[str], bool]
    ) -> None:
        self.prompt = prompt
        self.is_output = is_output
        self.is_cached = is_cached
        self.pending: dict[str, bool] = {}
        self.block_count: dict[str, int] = {}
        self.blocking: dict[str, dict[str, dict[Any, bool]]] = {}

    def add_node(self, root: str) -> None:
        node_ids, links = [root], []
        while node_ids:
            unique_id = node_ids.pop()
            if unique_id in self.pending:
                continue
            self.pending[unique_id] = True
            self.block_count[unique_id] = 0
            self.blocking[unique_id] = {}
            for value in self.prompt[unique_id]["inputs"].values():
                if _is_link(value) and not self.is_cached(value[0]):
                    node_ids.append(value[0])
                    links.append((value[0], value[1], unique_id))
        for source, socket, target in links:
            if not self.is_cached(source):
                self.add_node(source)
                if target not in self.blocking[source]:
                    self.blocking[source][target] = {}
                    self.block_count[target] += 1
                self.blocking[source][target][socket] = True

    def is_empty(self) -> bool:
        return not self.pending

    def stage(self) -> str | None:
        ready = [node for node in self.pending if self.block_count[node] == 0]
        for node in ready:
            if self.is_output(node):
                return node
        for node in ready:
            if any(self.is_output(blocked) for blocked in self.blocking[node]):
                return node
        for node in ready:
            for blocked in self.blocking[node]:
                if any(self.is_output(next_blocked) for next_blocked in self.blocking[blocked]):
                    return node
        return ready[0] if ready else None

    def complete(self, node_id: str) -> None:
        del self.pending[node_id]
        for blocked in self.blocking.pop(node_id):
            self.block_count[blocked] -= 1


@dataclass(order=True)
class _Queued:
    number: int | float
    prompt_id: str
    seq: int
    job: _Job = field(compare=False)


# -- image bytes -----------------------------------------------------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _with_text(png: bytes, texts: dict[str, str]) -> bytes:
    """``png`` with tEXt chunks right after IHDR, as PIL's PngInfo.add_text writes ComfyUI's metadata."""
    head = len(PNG_SIGNATURE) + 25  # the signature and the IHDR chunk (13 bytes of data)
    chunks = b"".join(
        _png_chunk(b"tEXt", key.encode("latin-1") + b"\0" + value.encode("latin-1", "replace"))
        for key, value in texts.items()
    )
    return png[:head] + chunks + png[head:]


@functools.lru_cache(maxsize=1)
def preview_jpeg() -> bytes:
    """The small JPEG every sampler step's preview frame carries."""
    out = io.BytesIO()
    Image.new("RGB", (16, 16), (96, 112, 140)).save(out, format="JPEG", quality=95)
    return out.getvalue()


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"  # no resolver on a test machine: the one name /etc/hosts always maps


def _upscale_factor(model_name: str) -> int:
    found = re.search(r"(?i)(?:x(\d)|(\d)x)", model_name)
    return int(found.group(1) or found.group(2)) if found else 4


def _tiled_scale_steps(width: int, height: int, tile: int = 512, overlap: int = 32) -> int:
    rows = 1 if height <= tile else -(-(height - overlap) // (tile - overlap))
    cols = 1 if width <= tile else -(-(width - overlap) // (tile - overlap))
    return rows * cols


class FakeComfyUI(ImageApiFake):
    """ComfyUI's server API, websocket and prompt worker (see module doc)."""

    def __init__(
        self,
        *,
        checkpoints: tuple[str, ...] | list[str] = ("sd_xl_base_1.0.safetensors",),
        upscale_models: tuple[str, ...] | list[str] = ("RealESRGAN_x2.pth",),
        step_delay: float = 0.0,
        require_origin_match: bool = True,
        cache: bool = True,
        previews: bool = True,
        progress_state: bool = True,
    ) -> None:
        super().__init__()
        self.checkpoints = list(checkpoints)
        self.upscale_models = list(upscale_models)
        self.step_delay = step_delay
        self.require_origin_match = require_origin_match
        self.cache_enabled = cache
        self.previews = previews
        self.progress_state = progress_state
        # Recorded for tests.
        self.prompts: dict[str, dict[str, Any]] = {}
        self.interrupts: list[dict[str, Any] | None] = []
        self.uploads: list[str] = []
        self.started: list[str] = []
        self.ws_clients: list[str] = []
        self.history: dict[str, dict[str, Any]] = {}
        # Server state.
        self.files: dict[str, bytes] = {}  # absolute fake path ("/ComfyUI/output/x.png") -> bytes
        self.number = 0
        self._queue: list[_Queued] = []
        self._seq = 0
        self._running: _Job | None = None
        self._cache: dict[str, _CacheEntry] = {}
        self._free_memory = False
        self._sockets: dict[Any, web.WebSocketResponse] = {}
        self._socket_flags: dict[Any, dict[str, Any]] = {}
        self._client_id: Any = None
        self._last_node_id: str | None = None
        self._interrupt = asyncio.Event()
        self._wakeup = asyncio.Event()
        self._messages: asyncio.Queue[tuple[Any, Any, Any]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._ever_started = False

        @web.middleware
        async def _origin_only(request: web.Request, handler):  # type: ignore[no-untyped-def]
            if self.require_origin_match and self._cross_origin(request):
                return web.Response(status=403)
            if request.method == "OPTIONS":
                return web.Response()
            return await handler(request)

        self.app.middlewares.append(_origin_only)
        routes: list[tuple[str, str, Any]] = [
            ("GET", "/ws", self._ws),
            ("GET", "/embeddings", self._embeddings),
            ("GET", "/models", self._models),
            ("GET", "/models/{folder}", self._models_in),
            ("GET", "/extensions", self._extensions),
            ("POST", "/upload/image", self._upload_image),
            ("GET", "/view", self._view),
            ("GET", "/system_stats", self._system_stats),
            ("GET", "/features", self._features),
            ("GET", "/prompt", self._get_prompt),
            ("GET", "/object_info", self._object_info),
            ("GET", "/object_info/{node_class}", self._object_info_node),
            ("GET", "/history", self._get_history),
            ("GET", "/history/{prompt_id}", self._get_history_entry),
            ("GET", "/queue", self._get_queue),
            ("POST", "/prompt", self._post_prompt),
            ("POST", "/queue", self._post_queue),
            ("POST", "/interrupt", self._post_interrupt),
            ("POST", "/free", self._post_free),
            ("POST", "/history", self._post_history),
        ]
        for prefix in ("/api", ""):
            for method, path, handler in routes:
                self.app.router.add_route(method, prefix + path, handler)

    # -- planned faults ----------------------------------------------------------------------------------------
    def push_execution_error(
        self,
        message: str = OOM_MESSAGE,
        exception_type: str = "torch.OutOfMemoryError",
        *,
        node_type: str = "KSampler",
        at_step: int = 0,
    ) -> Fault:
        options = {"message": message, "exception_type": exception_type, "node_type": node_type, "at_step": at_step}
        return self.push(Fault(EXECUTION_ERROR, options=options))

    def push_hang(self) -> Fault:
        return self.push(Fault(HANG))

    # -- helpers for tests -------------------------------------------------------------------------------------
    def file(self, filename: str, subfolder: str = "", type: str = "output") -> bytes | None:
        """A stored file's bytes (an output, an upload...), or None."""
        return self.files.get(posixpath.normpath(posixpath.join(DIRS[type], subfolder, filename)))

    def add_input(self, filename: str, data: bytes, subfolder: str = "") -> None:
        """Put a file in the input folder, as if it had been there before the server started."""
        self.files[posixpath.normpath(posixpath.join(DIRS["input"], subfolder, filename))] = data

    def queue_remaining(self) -> int:
        return len(self._queue) + (1 if self._running is not None else 0)

    # -- origin check ------------------------------------------------------------------------------------------
    @staticmethod
    def _cross_origin(request: web.Request) -> bool:
        """server.py's origin_only_middleware, as a verdict."""
        if request.headers.get("Sec-Fetch-Site") == "cross-site":
            return True
        if "Host" not in request.headers or "Origin" not in request.headers:
            return False
        host_domain = request.headers["Host"].lower()
        parsed = urllib.parse.urlparse(request.headers["Origin"])
        origin_domain: str | None = parsed.netloc.lower()
        host_parsed = urllib.parse.urlsplit("//" + host_domain)
        loopback = _is_loopback(host_parsed.hostname)
        compared_host: str | None = host_domain
        if parsed.port is None:
            compared_host = host_parsed.hostname
        if host_parsed.port is None:
            origin_domain = parsed.hostname
        return bool(loopback and compared_host and origin_domain and compared_host != origin_domain)

    # -- websocket ---------------------------------------------------------------------------------------------
    def _queue_info(self) -> dict[str, Any]:
        return {"exec_info": {"queue_remaining": self.queue_remaining()}}

    def _send_sync(self, event: Any, data: Any, sid: Any = None) -> None:
        """server.send_sync: through one queue, so every message keeps its place."""
        self._messages.put_nowait((event, data, sid))

    def _queue_updated(self) -> None:
        self._send_sync("status", {"status": self._queue_info()})

    async def _publish_loop(self) -> None:
        while True:
            event, data, sid = await self._messages.get()
            await self._send(event, data, sid)

    async def _send(self, event: Any, data: Any, sid: Any = None) -> None:
        binary = isinstance(data, bytes | bytearray)
        if sid is None:
            targets = list(self._sockets.values())
        else:
            try:
                targets = [self._sockets[sid]] if sid in self._sockets else []
            except TypeError:  # a client_id that cannot be a socket's (a JSON list or object)
                targets = []
        for ws in targets:
            with contextlib.suppress(ConnectionError, RuntimeError):
                if binary:
                    await ws.send_bytes(struct.pack(">I", event) + bytes(data))
                else:
                    await ws.send_json({"type": event, "data": data})

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sid = request.rel_url.query.get("clientId", "")
        if sid:
            self._sockets.pop(sid, None)  # a reconnection replaces the old socket (which is not closed)
        else:
            sid = uuid.uuid4().hex
        self._sockets[sid] = ws
        self._socket_flags[sid] = {"feature_flags": {}}
        self.ws_clients.append(sid)
        try:
            await self._send("status", {"status": self._queue_info(), "sid": sid}, sid)
            if self._client_id == sid and self._last_node_id is not None:
                await self._send("executing", {"node": self._last_node_id}, sid)
            first_message = True
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    continue
                try:
                    data = json.loads(message.data)
                except ValueError:
                    continue
                if not isinstance(data, dict):
                    continue  # the real handler fails on it before marking the first message
                if first_message and data.get("type") == "feature_flags":
                    self._socket_flags[sid]["feature_flags"] = data.get("data", {})
                    await self._send("feature_flags", dict(FEATURE_FLAGS), sid)
                first_message = False
        finally:
            # Unconditionally, as server.py does: an old socket closing after its clientId reconnected removes
            # the new one too.
            self._sockets.pop(sid, None)
            self._socket_flags.pop(sid, None)
        return ws

    def _supports_preview_metadata(self, sid: Any) -> bool:
        try:
            flags = self._socket_flags.get(sid, {}).get("feature_flags", {})
        except TypeError:
            return False
        return isinstance(flags, dict) and flags.get("supports_preview_metadata") is True

    # -- submitting --------------------------------------------------------------------------------------------
    async def _post_prompt(self, request: web.Request) -> web.StreamResponse:
        call = await self.record_generate(request)
        fault = self.take_fault()
        planned = await self.answer_generic_fault(request, fault)
        if planned is not None:
            return planned
        try:
            return await self._submit(request, call.body, fault)
        except _ServerCrash:
            return _server_error()
        except Exception:
            log.exception("fake ComfyUI: POST /prompt crashed, as the real handler would (500)")
            return _server_error()

    async def _submit(self, request: web.Request, body: Any, fault: Fault | None) -> web.StreamResponse:
        if isinstance(body, list):  # `"prompt" in json_data` is false for a list: a numbered no_prompt
            self.number += 1
            return web.json_response(
                {"error": _error("no_prompt", *["No prompt provided"] * 2), "node_errors": {}}, status=400
            )
        if not isinstance(body, dict):
            raise _ServerCrash
        if "number" in body:
            number: int | float = float(body["number"])
        else:
            number = self.number
            if body.get("front"):
                number = -number
            self.number += 1
        if "prompt" not in body:
            return web.json_response(
                {"error": _error("no_prompt", *["No prompt provided"] * 2), "node_errors": {}}, status=400
            )

        prompt = copy.deepcopy(body["prompt"])
        client_prompt_id = body.get("prompt_id")
        if client_prompt_id is None:
            prompt_id = str(uuid.uuid4())
        else:
            try:
                if not isinstance(client_prompt_id, str) or str(uuid.UUID(client_prompt_id)) != client_prompt_id:
                    raise ValueError(client_prompt_id)
            except ValueError:
                details = (
                    "prompt_id must be a UUID string in canonical lowercase hyphenated form; omit it to let the server "
                    "generate one"
                )
                error = _error("invalid_prompt_id", "prompt_id must be a valid UUID", details)
                return web.json_response({"error": error, "node_errors": {}}, status=400)
            prompt_id = client_prompt_id

        partial = body.get("partial_execution_targets")
        valid, error, good_outputs, node_errors = self._validate_prompt(prompt, partial)
        extra_data = copy.deepcopy(body["extra_data"]) if "extra_data" in body else {}
        if "client_id" in body:
            extra_data["client_id"] = body["client_id"]
        if "comfy_usage_source" not in extra_data:
            usage_source = request.headers.get("Comfy-Usage-Source")
            if usage_source:
                extra_data["comfy_usage_source"] = usage_source
        if not valid:
            return web.json_response({"error": error, "node_errors": node_errors}, status=400)
        for key in SENSITIVE_EXTRA_DATA_KEYS:
            extra_data.pop(key, None)
        extra_data["create_time"] = int(time.time() * 1000)
        job = _Job(number, prompt_id, prompt, extra_data, good_outputs, fault)
        self.prompts[prompt_id] = prompt
        self._seq += 1
        heapq.heappush(self._queue, _Queued(number, prompt_id, self._seq, job))
        self._queue_updated()
        self._wakeup.set()
        return web.json_response({"prompt_id": prompt_id, "number": number, "node_errors": node_errors})

    # -- validation (execution.py validate_prompt / validate_inputs) --------------------------------------------
    def _specs(self) -> dict[str, _Spec]:
        input_dir = DIRS["input"] + "/"
        names = [path[len(input_dir) :] for path in self.files if path.startswith(input_dir)]
        images = [
            name for name in names if "/" not in name and (mimetypes.guess_type(name)[0] or "").startswith("image/")
        ]
        return _specs(self.checkpoints, self.upscale_models, images)

    def _validate_prompt(
        self, prompt: Any, partial: list[str] | None
    ) -> tuple[bool, dict[str, Any] | None, list[str], dict[str, Any]]:
        """execution.validate_prompt: (valid, error, outputs to run, node_errors)."""
        specs = self._specs()
        outputs: list[str] = []
        for x in prompt:
            node = prompt[x]
            if "class_type" not in node:
                title = node.get("_meta", {}).get("title")
                message = (
                    f"Node '{title or f'ID #{x}'}' has no class_type. The workflow may be corrupted or a custom node "
                    "is missing."
                )
                info = {"node_id": x, "class_type": None, "node_title": title}
                return False, _error("missing_node_type", message, f"Node ID '#{x}'", **info), [], {}
            class_type = node["class_type"]
            spec = specs.get(class_type)
            if spec is None:
                title = node.get("_meta", {}).get("title", class_type)
                message = f"Node '{title}' not found. The custom node may not be installed."
                info = {"node_id": x, "class_type": class_type, "node_title": title}
                return False, _error("missing_node_type", message, f"Node ID '#{x}'", **info), [], {}
            if spec.output_node and (partial is None or x in partial) and x not in outputs:
                outputs.append(x)
        if not outputs:
            return False, _error("prompt_no_outputs", "Prompt has no outputs", ""), [], {}

        good: list[str] = []
        failures: list[tuple[str, list[dict[str, Any]]]] = []
        node_errors: dict[str, Any] = {}
        validated: dict[str, tuple[bool, list[dict[str, Any]], str]] = {}
        for output in outputs:
            try:
                valid, reasons, _ = self._validate_inputs(prompt, output, validated, [], specs)
            except Exception as ex:
                valid = False
                info = {"exception_type": _full_type_name(type(ex)), "traceback": _VALIDATE_TRACEBACK}
                reasons = [_error("exception_during_validation", "Exception when validating node", str(ex), **info)]
                validated[output] = (False, reasons, output)
            if valid is True:
                good.append(output)
                continue
            failures.append((output, reasons))
            # Every node validated so far with reasons of its own, as ComfyUI files them (even one an earlier
            # output depends on).
            for node_id, result in validated.items():
                if result[0] is not True and result[1]:
                    if node_id not in node_errors:
                        class_type = prompt[node_id]["class_type"]
                        node_errors[node_id] = {"errors": result[1], "dependent_outputs": [], "class_type": class_type}
                    node_errors[node_id]["dependent_outputs"].append(output)
        if not good:
            details = "\n".join(f"{error['message']}: {error['details']}" for _, errors in failures for error in errors)
            return (
                False,
                _error("prompt_outputs_failed_validation", "Prompt outputs failed validation", details),
                [],
                node_errors,
            )
        return True, None, good, node_errors

    def _validate_inputs(
        self,
        prompt: dict[str, Any],
        unique_id: str,
        validated: dict[str, tuple[bool, list[dict[str, Any]], str]],
        visiting: list[str],
        specs: dict[str, _Spec],
    ) -> tuple[bool, list[dict[str, Any]], str]:
        """execution.validate_inputs for one node, then (recursively) the nodes it links to."""
        if unique_id in validated:
            return validated[unique_id]
        if unique_id in visiting:
            path = [*visiting[visiting.index(unique_id) :], unique_id]
            cycle_nodes = list(dict.fromkeys(path))
            cycle_path = " -> ".join(f"{node_id} ({prompt[node_id]['class_type']})" for node_id in path)
            for node_id in cycle_nodes:
                error = _error(
                    "dependency_cycle",
                    "Dependency cycle detected",
                    cycle_path,
                    node_id=node_id,
                    cycle_nodes=cycle_nodes,
                )
                validated[node_id] = (False, [error], node_id)
            return validated[unique_id]

        inputs = prompt[unique_id]["inputs"]
        spec = specs[prompt[unique_id]["class_type"]]
        class_inputs = spec.input_types()
        validate_args = spec.validate_args
        errors: list[dict[str, Any]] = []
        valid = True
        for x in [*class_inputs.get("required", {}), *class_inputs.get("optional", {})]:
            input_type, category, extra_info = _input_info(class_inputs, x)
            if x not in inputs:
                if category == "required":
                    errors.append(_error("required_input_missing", "Required input is missing", x, input_name=x))
                continue
            val = inputs[x]
            info = [input_type, extra_info]
            if isinstance(val, list):
                if len(val) != 2:
                    message = "Bad linked input, must be a length-2 list of [node_id, slot_index]"
                    extra = {"input_name": x, "input_config": info, "received_value": val}
                    errors.append(_error("bad_linked_input", message, x, **extra))
                    continue
                o_id = val[0]
                o_class_type = prompt[o_id]["class_type"]  # KeyError for a node not in the graph, as in ComfyUI
                received_type = specs[o_class_type].returns[val[1]]  # IndexError / TypeError likewise
                if "input_types" not in validate_args and not _validate_node_input(received_type, input_type):
                    message = "Return type mismatch between linked nodes"
                    details = f"{x}, received_type({received_type}) mismatch input_type({input_type})"
                    extra = {"input_name": x, "input_config": info, "received_type": received_type, "linked_node": val}
                    errors.append(_error("return_type_mismatch", message, details, **extra))
                    continue
                try:
                    visiting.append(unique_id)
                    try:
                        inner = self._validate_inputs(prompt, o_id, validated, visiting, specs)
                    finally:
                        visiting.pop()
                    if inner[0] is False:
                        valid = False
                except Exception as ex:
                    valid = False
                    extra = {
                        "input_name": x,
                        "input_config": info,
                        "exception_message": str(ex),
                        "exception_type": _full_type_name(type(ex)),
                        "traceback": _VALIDATE_TRACEBACK,
                        "linked_node": val,
                    }
                    message = "Exception when validating inner node"
                    validated[o_id] = (
                        False,
                        [_error("exception_during_inner_validation", message, str(ex), **extra)],
                        o_id,
                    )
                continue

            try:
                if isinstance(val, dict) and "__value__" in val:
                    val = val["__value__"]
                    inputs[x] = val
                convert = _CONVERSIONS.get(input_type) if isinstance(input_type, str) else None
                if convert is not None:
                    val = convert(val)
                    inputs[x] = val
            except Exception as ex:
                message = f"Failed to convert an input value to a {input_type} value"
                extra = {"input_name": x, "input_config": info, "received_value": val, "exception_message": str(ex)}
                errors.append(_error("invalid_input_type", message, f"{x}, {val}, {ex}", **extra))
                continue
            if x in validate_args:  # the node's VALIDATE_INPUTS checks this one
                continue
            extra = {"input_name": x, "input_config": info, "received_value": val}
            if "min" in extra_info and val < extra_info["min"]:
                message = "Value {} smaller than min of {}".format(val, extra_info["min"])
                errors.append(_error("value_smaller_than_min", message, x, **extra))
                continue
            if "max" in extra_info and val > extra_info["max"]:
                message = "Value {} bigger than max of {}".format(val, extra_info["max"])
                errors.append(_error("value_bigger_than_max", message, x, **extra))
                continue
            if isinstance(input_type, list) or input_type == "COMBO":
                options = extra_info.get("options", []) if input_type == "COMBO" else input_type
                if val not in options:
                    big = len(options) > 20  # "Don't send back gigantic lists"
                    listed = f"(list of length {len(options)})" if big else str(options)
                    extra["input_config"] = None if big else info
                    errors.append(
                        _error("value_not_in_list", "Value not in list", f"{x}: {val!r} not in {listed}", **extra)
                    )

        if validate_args:  # LoadImage.VALIDATE_INPUTS(image), with the constants the node was given
            given = {}
            for name, value in inputs.items():
                if _is_link(value):
                    given[name] = None
                elif _input_info(class_inputs, name)[1] is not None:
                    given[name] = value
            filtered = {name: value for name, value in given.items() if name in validate_args}
            if "image" not in filtered:
                raise TypeError("LoadImage.VALIDATE_INPUTS() missing 1 required positional argument: 'image'")
            verdict = self._load_image_valid(filtered["image"])
            if verdict is not True:
                for name in filtered:
                    details = f"{name} - {verdict}" if verdict is not False else name
                    message = "Custom validation failed for node"
                    errors.append(_error("custom_validation_failed", message, details, input_name=name))

        before = validated.get(unique_id, (True, [], unique_id))
        result = (
            before[0] and valid is True and not errors,
            before[1] + [error for error in errors if error not in before[1]],
            unique_id,
        )
        validated[unique_id] = result
        return result

    # -- files -------------------------------------------------------------------------------------------------
    @staticmethod
    def _annotated(name: str) -> tuple[str, str | None]:
        """folder_paths.annotated_filepath: ``"x.png [output]"`` -> ("x.png", the output folder)."""
        for kind, cut in (("output", 9), ("input", 8), ("temp", 7)):
            if name.endswith(f"[{kind}]"):
                return name[:-cut], DIRS[kind]
        return name, None

    def _exists(self, path: str) -> bool:
        path = posixpath.normpath(path)
        return path in self.files or path in DIRS.values() or any(key.startswith(path + "/") for key in self.files)

    def _load_image_valid(self, image: Any) -> bool | str:
        if not isinstance(image, str):
            raise AttributeError(f"'{type(image).__name__}' object has no attribute 'endswith'")
        name, base = self._annotated(image)
        if not self._exists(posixpath.join(base or DIRS["input"], name)):
            return f"Invalid image file: {image}"
        return True

    # -- the worker --------------------------------------------------------------------------------------------
    async def _worker(self) -> None:
        while True:
            while not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
            job = heapq.heappop(self._queue).job
            self._running = job
            self.started.append(job.prompt_id)
            history_item = copy.deepcopy(job.item())
            self._queue_updated()
            try:
                run, history_result = await self._execute(job)
            except Exception:  # a bug of the fake: the prompt fails, the worker lives on
                log.exception("fake ComfyUI: prompt %s crashed the worker", job.prompt_id)
                run, history_result = _Run(job, job.extra_data.get("client_id"), success=False), {"outputs": {}}
            self._running = None
            if len(self.history) > MAXIMUM_HISTORY_SIZE:
                self.history.pop(next(iter(self.history)))
            entry: dict[str, Any] = {
                "prompt": history_item,
                "outputs": {},
                "status": {
                    "status_str": "success" if run.success else "error",
                    "completed": run.success,
                    "messages": copy.deepcopy(run.messages),
                },
            }
            entry.update(history_result)
            self.history[job.prompt_id] = entry
            self._queue_updated()
            if self._client_id is not None:
                self._send_sync("executing", {"node": None, "prompt_id": job.prompt_id}, self._client_id)
            if self._free_memory:
                self._free_memory = False
                self._cache.clear()

    def _add_message(self, run: _Run, event: str, data: dict[str, Any], *, broadcast: bool) -> None:
        data = {**data, "timestamp": int(time.time() * 1000)}
        run.messages.append([event, data])
        if run.client_id is not None or broadcast:
            self._send_sync(event, data, run.client_id)

    def _signatures(self, prompt: dict[str, Any]) -> dict[str, str]:
        """Each node's input signature (its class, inputs and everything upstream), the output cache's key."""
        memo: dict[str, str] = {}

        def signature(node_id: str, path: tuple[str, ...]) -> str:
            if node_id in memo:
                return memo[node_id]
            if node_id in path:
                raise ValueError("cycle")
            node = prompt[node_id]
            inputs = {}
            for name, value in sorted(node["inputs"].items()):
                inputs[name] = ["link", signature(value[0], (*path, node_id)), value[1]] if _is_link(value) else value
            changed = None
            if node["class_type"] == "LoadImage":  # IS_CHANGED: the file's hash
                data = self._read_annotated(node["inputs"].get("image"))
                changed = hashlib.sha256(data).hexdigest() if data is not None else uuid.uuid4().hex
            memo[node_id] = json.dumps([node["class_type"], changed, inputs], sort_keys=True, default=str)
            return memo[node_id]

        out = {}
        for node_id in prompt:
            with contextlib.suppress(Exception):  # a node nothing runs may not even be valid
                out[node_id] = signature(node_id, ())
        return out

    def _read_annotated(self, image: Any) -> bytes | None:
        if not isinstance(image, str):
            return None
        name, base = self._annotated(image)
        return self.files.get(posixpath.normpath(posixpath.join(base or DIRS["input"], name)))

    async def _execute(self, job: _Job) -> tuple[_Run, dict[str, Any]]:
        """PromptExecutor.execute_async."""
        self._interrupt.clear()
        client_id = job.extra_data.get("client_id")
        self._client_id = client_id
        run = _Run(job, client_id)
        self._add_message(run, "execution_start", {"prompt_id": job.prompt_id}, broadcast=False)
        signatures = self._signatures(job.prompt)
        specs = self._specs()

        def cached(node_id: str) -> bool:
            return self.cache_enabled and signatures.get(node_id) in self._cache

        run.cached_nodes = [node_id for node_id in job.prompt if cached(node_id)]
        self._add_message(
            run, "execution_cached", {"nodes": run.cached_nodes, "prompt_id": job.prompt_id}, broadcast=False
        )
        execution = _ExecutionList(
            job.prompt, lambda node_id: specs[job.prompt[node_id]["class_type"]].output_node, cached
        )
        for node_id in job.outputs:
            execution.add_node(node_id)
        try:
            while not execution.is_empty():
                node_id = execution.stage()
                if node_id is None:
                    break
                await self._execute_node(run, node_id, signatures, specs)
                execution.complete(node_id)
            else:
                self._add_message(run, "execution_success", {"prompt_id": job.prompt_id}, broadcast=False)
        except _Interrupted as stop:
            run.success = False
            data = {
                "prompt_id": job.prompt_id,
                "node_id": stop.node_id,
                "node_type": job.prompt[stop.node_id]["class_type"],
                "executed": list(run.executed),
            }
            self._add_message(run, "execution_interrupted", data, broadcast=True)
        except _NodeFailure as failure:
            run.success = False
            self._add_message(run, "execution_error", self._error_report(run, failure), broadcast=False)
        history_result = {
            "outputs": {node_id: ui["output"] for node_id, ui in run.ui_outputs.items()},
            "meta": {node_id: ui["meta"] for node_id, ui in run.ui_outputs.items()},
        }
        self._last_node_id = None
        return run, history_result

    def _error_report(self, run: _Run, failure: _NodeFailure) -> dict[str, Any]:
        tips = OOM_TIPS if "OutOfMemoryError" in failure.exception_type else ""
        return {
            "prompt_id": run.prompt_id,
            "node_id": failure.node_id,
            "node_type": run.job.prompt[failure.node_id]["class_type"],
            "executed": list(run.executed),
            "exception_message": f"{failure.message}\n{tips}",
            "exception_type": failure.exception_type,
            "traceback": failure.traceback,
            "current_inputs": failure.current_inputs,
            "current_outputs": list(run.cached_nodes),
        }

    # -- progress ----------------------------------------------------------------------------------------------
    def _meta(self, node_id: str) -> dict[str, Any]:
        return {"node_id": node_id, "display_node": node_id, "parent_node": None, "real_node_id": node_id}

    def _send_progress_state(self, run: _Run) -> None:
        if not self.progress_state:
            return
        nodes = {
            node_id: {
                "value": state["value"],
                "max": state["max"],
                "state": state["state"],
                "node_id": node_id,
                "prompt_id": run.prompt_id,
                "display_node_id": node_id,
                "parent_node_id": None,
                "real_node_id": node_id,
            }
            for node_id, state in run.progress.items()
        }
        self._send_sync("progress_state", {"prompt_id": run.prompt_id, "nodes": nodes}, run.client_id)

    def _progress_start(self, run: _Run, node_id: str) -> None:
        run.progress[node_id] = {"state": "running", "value": 0.0, "max": 1.0}
        self._send_progress_state(run)

    def _progress_finish(self, run: _Run, node_id: str) -> None:
        state = run.progress.setdefault(node_id, {"state": "pending", "value": 0, "max": 1})
        state["state"] = "finished"
        state["value"] = state["max"]
        self._send_progress_state(run)

    def _check_interrupt(self, node_id: str) -> None:
        if self._interrupt.is_set():
            raise _Interrupted(node_id)

    async def _step(self, run: _Run, node_id: str, value: int, total: int, *, preview: bool) -> None:
        """main.py's progress hook: interrupt check, progress_state (+ metadata preview), progress (+ preview)."""
        self._check_interrupt(node_id)
        run.progress[node_id] = {"state": "running", "value": value, "max": total}
        self._send_progress_state(run)
        preview = preview and self.previews
        with_metadata = self._supports_preview_metadata(run.client_id)
        if preview and with_metadata:
            metadata = {
                "node_id": node_id,
                "prompt_id": run.prompt_id,
                "display_node_id": node_id,
                "parent_node_id": None,
                "real_node_id": node_id,
                "image_type": "image/jpeg",
            }
            packed = json.dumps(metadata).encode()
            frame = struct.pack(">I", len(packed)) + packed + preview_jpeg()
            self._send_sync(PREVIEW_IMAGE_WITH_METADATA, frame, run.client_id)
        progress = {"value": value, "max": total, "prompt_id": run.prompt_id, "node": node_id}
        self._send_sync("progress", progress, run.client_id)
        if preview and not with_metadata:
            self._send_sync(PREVIEW_IMAGE, struct.pack(">I", 1) + preview_jpeg(), run.client_id)

    # -- nodes -------------------------------------------------------------------------------------------------
    async def _execute_node(self, run: _Run, node_id: str, signatures: dict[str, str], specs: dict[str, _Spec]) -> None:
        """execution.execute for one node."""
        node = run.job.prompt[node_id]
        class_type = node["class_type"]
        signature = signatures.get(node_id)
        if self.cache_enabled and signature in self._cache:
            entry = self._cache[signature]
            run.outputs[node_id] = entry.outputs
            if entry.ui is not None:
                run.ui_outputs[node_id] = {"meta": self._meta(node_id), "output": entry.ui}
                if run.client_id is not None:
                    executed = {
                        "node": node_id,
                        "display_node": node_id,
                        "output": entry.ui,
                        "prompt_id": run.prompt_id,
                    }
                    self._send_sync("executed", executed, run.client_id)
            self._progress_finish(run, node_id)
            return

        self._progress_start(run, node_id)
        inputs = self._resolve(run, node, signatures, specs[class_type])
        if run.client_id is not None:
            self._last_node_id = node_id
            executing = {"node": node_id, "display_node": node_id, "prompt_id": run.prompt_id}
            self._send_sync("executing", executing, run.client_id)
        self._check_interrupt(node_id)
        try:
            outputs, ui = await self._run_node(run, node_id, class_type, inputs)
        except _Interrupted:
            raise
        except Exception as ex:  # any exception in a node is the prompt's execution_error
            failure = ex if isinstance(ex, _NodeFailure) else _NodeFailure(_full_type_name(type(ex)), str(ex))
            if not isinstance(ex, _NodeFailure):
                log.exception("fake ComfyUI: node %s (%s) crashed", node_id, class_type)
            failure.node_id = node_id
            failure.current_inputs = {name: [_format_value(value)] for name, value in inputs.items()}
            raise failure from None
        if ui is not None:
            run.ui_outputs[node_id] = {"meta": self._meta(node_id), "output": ui}
            if run.client_id is not None:
                executed = {"node": node_id, "display_node": node_id, "output": ui, "prompt_id": run.prompt_id}
                self._send_sync("executed", executed, run.client_id)
        if self.cache_enabled and signature is not None:
            self._cache[signature] = _CacheEntry(outputs, ui)
        run.outputs[node_id] = outputs
        self._progress_finish(run, node_id)
        run.executed.append(node_id)

    def _resolve(self, run: _Run, node: dict[str, Any], signatures: dict[str, str], spec: _Spec) -> dict[str, Any]:
        """The node's input values: constants as validated, links from this run or from the cache."""
        values: dict[str, Any] = {}
        for name, value in node["inputs"].items():
            if _is_link(value):
                source = run.outputs.get(value[0])
                if source is None:
                    source = self._cache[signatures[value[0]]].outputs
                values[name] = source[int(value[1])]
            else:
                values[name] = value
        for name, kind in spec.hidden.items():
            values[name] = run.job.prompt if kind == "PROMPT" else run.job.extra_data.get("extra_pnginfo")
        return values

    def _planned_failure(self, run: _Run, class_type: str, step: int | None) -> None:
        """Raise the pushed execution error when this node (and, for a sampler, this step) is where it strikes."""
        fault = run.job.fault
        if fault is None or fault.kind != EXECUTION_ERROR or run.fault_played:
            return
        if fault.options["node_type"] != class_type:
            return
        if step is not None and step != fault.options["at_step"]:
            return
        run.fault_played = True
        raise _NodeFailure(fault.options["exception_type"], fault.options["message"])

    async def _run_node(
        self, run: _Run, node_id: str, class_type: str, inputs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any] | None]:
        if class_type not in ("KSampler", "KSamplerAdvanced"):
            self._planned_failure(run, class_type, None)
        if class_type == "CheckpointLoaderSimple":
            name = inputs["ckpt_name"]
            return (
                _Opaque(_pointer("comfy.model_patcher.ModelPatcher", name)),
                _Opaque(_pointer("comfy.sd.CLIP", name)),
                _Opaque(_pointer("comfy.sd.VAE", name)),
            ), None
        if class_type == "CLIPTextEncode":
            text = "[[tensor([[[-0.3885,  0.0230, -0.0523,  ..., -0.4902, -0.3066,  0.0674]]]), {'pooled_output': "
            return (_Opaque(text + "tensor([[-0.6914,  1.1328, -0.2031,  ...,  0.4570, -0.8047,  0.1621]])}]]"),), None
        if class_type == "EmptyLatentImage":
            width, height = inputs["width"] // 8 * 8, inputs["height"] // 8 * 8
            return (_Latent(width, height, (0,) * inputs["batch_size"]),), None
        if class_type == "LoadImage":
            return self._load_image(inputs["image"]), None
        if class_type == "VAEEncode":
            pics = inputs["pixels"].pics
            width, height = pics[0].width // 8 * 8, pics[0].height // 8 * 8
            return (_Latent(width, height, tuple(pic.seed for pic in pics)),), None
        if class_type in ("KSampler", "KSamplerAdvanced"):
            return (await self._sample(run, node_id, class_type, inputs),), None
        if class_type == "VAEDecode":
            latent = inputs["samples"]
            return (_Images(tuple(_Pic(latent.width, latent.height, seed) for seed in latent.seeds)),), None
        if class_type == "UpscaleModelLoader":
            name = inputs["model_name"]
            text = _pointer("spandrel.__helpers.model_descriptor.ImageModelDescriptor", name)
            return (_Opaque(text, _upscale_factor(name)),), None
        if class_type == "ImageUpscaleWithModel":
            pics, scale = inputs["image"].pics, inputs["upscale_model"].scale
            total = len(pics) * _tiled_scale_steps(pics[0].width, pics[0].height)
            for value in range(1, total + 1):
                await self._step(run, node_id, value, total, preview=False)
            return (_Images(tuple(_Pic(pic.width * scale, pic.height * scale, pic.seed) for pic in pics)),), None
        if class_type == "ImageScale":  # nodes.py ImageScale.upscale: a side of 0 keeps the ratio, both 0 no change
            resized = []
            for pic in inputs["image"].pics:
                width, height = inputs["width"], inputs["height"]
                if width == 0 and height == 0:
                    width, height = pic.width, pic.height
                elif width == 0:
                    width = max(1, round(pic.width * height / pic.height))
                elif height == 0:
                    height = max(1, round(pic.height * width / pic.width))
                resized.append(_Pic(width, height, pic.seed))
            return (_Images(tuple(resized)),), None
        if class_type == "RepeatLatentBatch":
            latent = inputs["samples"]
            return (_Latent(latent.width, latent.height, latent.seeds * inputs["amount"]),), None
        if class_type == "ImageScaleBy":
            factor = inputs["scale_by"]
            scaled = tuple(
                _Pic(max(1, round(pic.width * factor)), max(1, round(pic.height * factor)), pic.seed)
                for pic in inputs["image"].pics
            )
            return (_Images(scaled),), None
        if class_type in ("SaveImage", "PreviewImage"):
            return (), await self._save_images(run, class_type, inputs)
        raise _NodeFailure("KeyError", repr(class_type))  # pragma: no cover - every spec has a branch

    def _load_image(self, image: str) -> tuple[_Images, _Opaque]:
        name, base = self._annotated(image)
        path = posixpath.normpath(posixpath.join(base or DIRS["input"], name))
        data = self.files.get(path)
        if data is None:
            if self._exists(path):
                raise _NodeFailure("IsADirectoryError", f"[Errno 21] Is a directory: '{path}'")
            raise _NodeFailure("FileNotFoundError", f"[Errno 2] No such file or directory: '{path}'")
        try:
            with Image.open(io.BytesIO(data)) as picture:
                width, height = picture.size
        except Exception:
            raise _NodeFailure("PIL.UnidentifiedImageError", f"cannot identify image file '{path}'") from None
        seed = int.from_bytes(hashlib.sha256(data).digest()[:4], "big")
        return _Images((_Pic(width, height, seed),)), _Opaque("tensor([[[0., 0., 0.,  ..., 0., 0., 0.]]])")

    async def _sample(self, run: _Run, node_id: str, class_type: str, inputs: dict[str, Any]) -> _Latent:
        latent: _Latent = inputs["latent_image"]
        if class_type == "KSampler":
            seed, steps = inputs["seed"], inputs["steps"]
            total = steps if inputs.get("denoise", 1.0) > 0 else 0
        else:
            seed, steps = inputs["noise_seed"], inputs["steps"]
            last = min(inputs["end_at_step"], steps)
            total = max(0, last - inputs["start_at_step"])
        for step in range(total):
            self._planned_failure(run, class_type, step)
            if run.job.fault is not None and run.job.fault.kind == HANG and step == 0:
                await self._until_interrupted()
            await self.sleep(self.step_delay)
            await self._step(run, node_id, step + 1, total, preview=True)
        self._planned_failure(run, class_type, total)  # at_step at or past the last step: fails at the end
        if total == 0:
            return latent
        return _Latent(latent.width, latent.height, tuple(seed + i for i in range(len(latent.seeds))))

    async def _until_interrupted(self) -> None:
        while not self._interrupt.is_set() and not self._closing.is_set():
            await self.sleep(0.01)

    def _save_path(self, prefix: str, base: str, width: int, height: int) -> tuple[str, str, int, str]:
        """folder_paths.get_save_image_path: (folder, file name stem, counter, subfolder)."""
        if "%" in prefix:
            now = time.localtime()
            for key, value in (
                ("%width%", str(width)),
                ("%height%", str(height)),
                ("%year%", str(now.tm_year)),
                ("%month%", str(now.tm_mon).zfill(2)),
                ("%day%", str(now.tm_mday).zfill(2)),
                ("%hour%", str(now.tm_hour).zfill(2)),
                ("%minute%", str(now.tm_min).zfill(2)),
                ("%second%", str(now.tm_sec).zfill(2)),
            ):
                prefix = prefix.replace(key, value)
        subfolder = posixpath.dirname(posixpath.normpath(prefix))
        filename = posixpath.basename(posixpath.normpath(prefix))
        folder = posixpath.normpath(posixpath.join(base, subfolder))
        common = posixpath.commonpath((base, folder))
        if common != base:
            message = (
                "**** ERROR: Saving image outside the output folder is not allowed."
                f"\n full_output_folder: {folder}\n         output_dir: {base}\n         commonpath: {common}"
            )
            raise _NodeFailure("Exception", message)
        prefix_len = len(posixpath.basename(prefix))
        found = []
        for path in self.files:
            if posixpath.dirname(path) != folder:
                continue
            name = posixpath.basename(path)
            try:
                digits = int(name[prefix_len + 1 :].split("_")[0])
            except ValueError:
                digits = 0
            stem = name[: prefix_len + 1]
            if stem[:-1] == filename and stem[-1:] == "_":
                found.append((digits, stem))
        counter = max(found)[0] + 1 if found else 1
        return folder, filename, counter, subfolder

    async def _save_images(self, run: _Run, class_type: str, inputs: dict[str, Any]) -> dict[str, Any]:
        pics = list(inputs["images"].pics)
        fault = run.job.fault if run.job.fault is not None and run.job.fault.kind in IMAGE_FAULTS else None
        wanted = self.image_count(fault, len(pics))
        if wanted <= len(pics):
            pics = pics[:wanted]
        else:  # push_count asked for more: the last picture's size, the next seeds
            last = pics[-1]
            pics += [_Pic(last.width, last.height, last.seed + k) for k in range(1, wanted - len(pics) + 1)]
        if class_type == "SaveImage":
            kind, prefix = "output", str(inputs.get("filename_prefix", "ComfyUI"))
        else:
            suffix = "".join(self.rng.choice("abcdefghijklmnopqrstupvxyz") for _ in range(5))
            kind, prefix = "temp", f"ComfyUI_temp_{suffix}"
        if not pics:
            return {"images": []}
        folder, filename, counter, subfolder = self._save_path(prefix, DIRS[kind], pics[0].width, pics[0].height)
        texts = {"prompt": json.dumps(run.job.prompt)}
        extra_pnginfo = run.job.extra_data.get("extra_pnginfo")
        if isinstance(extra_pnginfo, dict):
            texts.update({key: json.dumps(value) for key, value in extra_pnginfo.items()})
        results = []
        for batch_number, pic in enumerate(pics):
            name = f"{filename.replace('%batch_num%', str(batch_number))}_{counter:05}_.png"
            if fault is not None and fault.kind != COUNT:
                data = await asyncio.to_thread(self.image, fault, pic.width, pic.height, pic.seed)
            else:
                data = await asyncio.to_thread(png_bytes, pic.width, pic.height, pic.seed)
                data = _with_text(data, texts)
            self.files[posixpath.join(folder, name)] = data
            results.append({"filename": name, "subfolder": subfolder, "type": kind})
            counter += 1
        return {"images": results}

    # -- HTTP: queue and control -------------------------------------------------------------------------------
    async def _get_prompt(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self._queue_info())

    async def _get_queue(self, request: web.Request) -> web.StreamResponse:
        running = [self._running.item()] if self._running is not None else []
        pending = [queued.job.item() for queued in self._queue]
        return web.json_response({"queue_running": running, "queue_pending": pending})

    async def _json_body(self, request: web.Request) -> Any:
        """``await request.json()``: raises on an empty or malformed body, as aiohttp does."""
        return json.loads(await request.text())

    async def _post_queue(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await self._json_body(request)
            if body.get("clear"):
                self._queue.clear()
                self._queue_updated()
            if "delete" in body:
                for prompt_id in body["delete"]:
                    for index, queued in enumerate(self._queue):
                        if queued.prompt_id == prompt_id:
                            if len(self._queue) == 1:
                                self._queue.clear()
                                self._queue_updated()
                            else:
                                self._queue.pop(index)
                                heapq.heapify(self._queue)
                            self._queue_updated()
                            break
        except Exception:
            return _server_error()
        return web.Response(status=200)

    async def _post_interrupt(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await self._json_body(request)
        except ValueError:
            body = {}
            self.interrupts.append(None)
        else:
            self.interrupts.append(body if isinstance(body, dict) else None)
        if not isinstance(body, dict):
            return _server_error()  # json_data.get on a list or null
        prompt_id = body.get("prompt_id")
        if prompt_id:
            if self._running is not None and self._running.prompt_id == prompt_id:
                self._interrupt.set()
        else:
            self._interrupt.set()
        return web.Response(status=200)

    async def _post_free(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await self._json_body(request)
            free_memory = bool(body.get("free_memory", False))
        except Exception:
            return _server_error()
        if free_memory:
            if self._running is None:
                self._cache.clear()
            else:
                self._free_memory = True
        return web.Response(status=200)

    async def _get_history(self, request: web.Request) -> web.StreamResponse:
        try:
            max_items = int(request.query["max_items"]) if "max_items" in request.query else None
            offset = int(request.query["offset"]) if "offset" in request.query else -1
        except ValueError:
            return _server_error()
        if offset < 0 and max_items is not None:
            offset = len(self.history) - max_items
        out = {}
        for i, (prompt_id, entry) in enumerate(self.history.items()):
            if i >= offset:
                out[prompt_id] = entry
                if max_items is not None and len(out) >= max_items:
                    break
        return web.json_response(out)

    async def _get_history_entry(self, request: web.Request) -> web.StreamResponse:
        prompt_id = request.match_info["prompt_id"]
        if prompt_id in self.history:
            return web.json_response({prompt_id: copy.deepcopy(self.history[prompt_id])})
        return web.json_response({})

    async def _post_history(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await self._json_body(request)
            if body.get("clear"):
                self.history.clear()
            for prompt_id in body.get("delete", []) if "delete" in body else []:
                self.history.pop(prompt_id, None)
        except Exception:
            return _server_error()
        return web.Response(status=200)

    # -- HTTP: files -------------------------------------------------------------------------------------------
    async def _view(self, request: web.Request) -> web.StreamResponse:
        query = request.rel_url.query
        if "filename" not in query:
            return web.Response(status=404)
        filename = query["filename"]
        if filename.startswith("blake3:"):
            return web.Response(status=404)  # the asset store is off
        filename, folder = self._annotated(filename)
        if not filename:
            return web.Response(status=400)
        if filename[0] == "/" or ".." in filename:
            return web.Response(status=400)
        if folder is None:
            folder = DIRS.get(query.get("type", "output"))
        if folder is None:
            return web.Response(status=400)
        if "subfolder" in query:
            full = posixpath.join(folder, query["subfolder"])
            if posixpath.commonpath((posixpath.normpath(full), folder)) != folder:
                return web.Response(status=403)
            folder = full
        filename = posixpath.basename(filename)
        data = self.files.get(posixpath.normpath(posixpath.join(folder, filename)))
        if data is None:
            return web.Response(status=404)
        disposition = {"Content-Disposition": f'filename="{filename}"'}
        try:
            if "preview" in query:
                parts = query["preview"].split(";")
                image_format = parts[0]
                if image_format not in ("webp", "jpeg") or "a" in query.get("channel", ""):
                    image_format = "webp"
                quality = int(parts[-1]) if parts[-1].isdigit() else 90
                with Image.open(io.BytesIO(data)) as picture:
                    converted = picture.convert("RGB") if image_format == "jpeg" else picture
                    out = io.BytesIO()
                    converted.save(out, format=image_format, quality=quality)
                return web.Response(body=out.getvalue(), content_type=f"image/{image_format}", headers=disposition)
            channel = query.get("channel", "rgba")
            if channel in ("rgb", "a"):
                with Image.open(io.BytesIO(data)) as picture:
                    if channel == "rgb":
                        result = picture.convert("RGB")
                    else:
                        alpha = picture.getchannel("A") if picture.mode == "RGBA" else Image.new("L", picture.size, 255)
                        result = Image.new("RGBA", picture.size)
                        result.putalpha(alpha)
                    out = io.BytesIO()
                    result.save(out, format="PNG")
                return web.Response(body=out.getvalue(), content_type="image/png", headers=disposition)
        except Exception:
            return _server_error()
        content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        headers = {"X-Content-Type-Options": "nosniff"}
        if content_type in ("text/html", "application/xhtml+xml", "text/javascript", "text/css", "image/svg+xml"):
            content_type = "application/octet-stream"
            headers.update({"Vary": "Sec-Fetch-Dest", "Cache-Control": "no-store"})
            disposition = {"Content-Disposition": f'attachment; filename="{filename}"'}
        headers.update(disposition)
        headers["Content-Type"] = content_type
        return web.Response(body=data, headers=headers)

    async def _upload_image(self, request: web.Request) -> web.StreamResponse:
        post = await request.post()
        image = post.get("image")
        overwrite = post.get("overwrite")
        kind = post.get("type")
        if kind is None:
            kind = "input"
        if kind not in DIRS:
            return _server_error()  # get_dir_by_type: UnboundLocalError
        if not image:
            return web.Response(status=400)
        if not isinstance(image, web.FileField):
            return _server_error()  # image.file on a plain field
        filename = image.filename
        if not filename:
            return web.Response(status=400)
        subfolder = str(post.get("subfolder", ""))
        base = DIRS[str(kind)]
        folder = posixpath.normpath(posixpath.join(base, posixpath.normpath(subfolder)))
        path = posixpath.normpath(posixpath.join(folder, filename))
        if posixpath.commonpath((base, path)) != base:
            return web.Response(status=400)
        data = image.file.read()
        stem, extension = posixpath.splitext(filename)
        duplicate = False
        if overwrite not in ("true", "1"):
            i = 1
            while self._exists(path):
                if self.files.get(path) == data:
                    duplicate = True
                    break
                filename = f"{stem} ({i}){extension}"
                path = posixpath.join(folder, filename)
                i += 1
        if not duplicate:
            self.files[path] = data
        self.uploads.append(filename)
        return web.json_response({"name": filename, "subfolder": subfolder, "type": kind})

    # -- HTTP: introspection -----------------------------------------------------------------------------------
    async def _object_info(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({name: spec.info() for name, spec in self._specs().items()})

    async def _object_info_node(self, request: web.Request) -> web.StreamResponse:
        specs = self._specs()
        name = request.match_info["node_class"]
        return web.json_response({name: specs[name].info()} if name in specs else {})

    async def _system_stats(self, request: web.Request) -> web.StreamResponse:
        gib = 1024**3
        stats = {
            "system": {
                "os": "linux",
                "ram_total": 67_167_100_928,
                "ram_free": 51_539_607_552,
                "comfyui_version": VERSION,
                "required_frontend_version": "1.36.14",
                "installed_templates_version": "0.8.4",
                "required_templates_version": "0.8.4",
                "comfy_package_versions": [
                    {"name": "comfyui-frontend-package", "installed": "1.36.14", "required": "1.36.14"},
                    {"name": "comfyui-workflow-templates", "installed": "0.8.4", "required": "0.8.4"},
                    {"name": "comfyui-embedded-docs", "installed": "0.3.9", "required": "0.3.9"},
                ],
                "python_version": "3.12.10 (main, Apr  9 2025, 04:44:59) [GCC 14.2.0]",
                "pytorch_version": "2.9.1+cu128",
                "embedded_python": False,
                "deploy_environment": "local-git",
                "argv": ["main.py", "--listen", "127.0.0.1"],
            },
            "devices": [
                {
                    "name": "cuda:0 NVIDIA GeForce RTX 4090 : cudaMallocAsync",
                    "type": "cuda",
                    "index": 0,
                    "vram_total": 24 * gib,
                    "vram_free": 22 * gib,
                    "torch_vram_total": 0,
                    "torch_vram_free": 0,
                }
            ],
        }
        return web.json_response(stats)

    async def _features(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(dict(FEATURE_FLAGS))

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        return web.json_response([])

    async def _extensions(self, request: web.Request) -> web.StreamResponse:
        return web.json_response([])

    async def _models(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(list(MODEL_FOLDERS))

    async def _models_in(self, request: web.Request) -> web.StreamResponse:
        folder = request.match_info["folder"]
        if folder not in MODEL_FOLDERS:
            return web.Response(status=404)
        listed = {"checkpoints": self.checkpoints, "upscale_models": self.upscale_models}
        return web.json_response(list(listed.get(folder, [])))

    # -- lifecycle ---------------------------------------------------------------------------------------------
    async def start(self) -> Self:
        if self._ever_started:  # a restarted ComfyUI: files on disk stay, everything in memory is gone
            self._queue.clear()
            self.history.clear()
            self._cache.clear()
            self._running = None
            self._client_id = None
            self._last_node_id = None
            self.number = 0
        self._ever_started = True
        self._messages = asyncio.Queue()
        self._interrupt = asyncio.Event()
        self._wakeup = asyncio.Event()
        await super().start()
        self._tasks = [asyncio.create_task(self._worker()), asyncio.create_task(self._publish_loop())]
        if self._queue:
            self._wakeup.set()
        return self

    async def stop(self) -> None:
        self._closing.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for ws in list(self._sockets.values()):
            with contextlib.suppress(Exception):
                await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")
        self._sockets.clear()
        self._socket_flags.clear()
        await super().stop()
