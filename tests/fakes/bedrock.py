"""A fake AWS Bedrock runtime serving Stability's models, on 127.0.0.1: SDXL v1 (``stability.stable-diffusion-xl-v1``)
and the current ones, SD3.5 Large, Stable Image Core 1.1 and Stable Image Ultra 1.1.

SDXL wire format (reference: shared/reference/backends.md, seed 003):

- ``POST /model/{modelId}/invoke`` (modelId may be percent-encoded, or a foundation-model ARN), JSON body
  like Stability v1: ``{"text_prompts": [{"text", "weight"}], "cfg_scale", "seed", "steps", "width",
  "height", "samples", "sampler", "style_preset", "clip_guidance_preset"}`` -> 200
  ``{"result": "success", "artifacts": [{"seed", "base64", "finishReason"}]}``. Bedrock's SDXL takes
  only ``samples`` 1, steps 10-150, and the nine SDXL sizes (default 1024x1024); seed 0 or absent is
  random. Images are real PNGs of width x height.
- Every request must be SigV4-signed for service ``bedrock`` (not bedrock-runtime) in ``region``: the
  fake recomputes the signature with the secret of the configured access key (an independent
  implementation of the algorithm, so it checks what botocore produced) over the method, path, query,
  the signed headers and the body hash, and checks the credential scope and the ``X-Amz-Date`` skew.
- Errors: HTTP status, header ``x-amzn-ErrorType: <Type>:http://internal.amazon.com/coral/...`` (clients
  keep the part before ``:``) and body ``{"message"}``. Auth problems are 403:
  ``MissingAuthenticationTokenException`` (no Authorization), ``IncompleteSignatureException``
  (malformed header, no X-Amz-Date), ``UnrecognizedClientException`` (unknown access key id),
  ``InvalidSignatureException`` (wrong signature, wrong service/region scope, stale date);
  ``AccessDeniedException`` 403 for a model in ``denied_models``; ``ValidationException`` 400 for an
  unknown model id or a bad body ("Malformed input request: ..."). Every answer has ``x-amzn-RequestId``.

SDXL image-to-image (AWS user guide ``model-parameters-diffusion-1-0-image-image``): the same body without
``width``/``height``, with ``init_image`` (base64 of the picture, required: its size is the answer's, one of the
nine SDXL sizes), ``init_image_mode`` (IMAGE_STRENGTH, default, or STEP_SCHEDULE) and ``image_strength`` (0-1, how
much of the picture is kept); violations are ValidationException "Malformed input request: ...".

Current models (reference: backends.md "Current APIs" section 2; AWS user guide pages
``model-parameters-diffusion-3-5-large``, ``...-stable-image-core-text-image-request-response`` and
``...-stable-ultra-text-image-request-response``):

- ``stability.sd3-5-large-v1:0``, ``stability.stable-image-core-v1:1``, ``stability.stable-image-ultra-v1:1``
  (``STABLE_IMAGE_MODELS``), also as an inference profile (``us.``, ``eu.``, ``apac.`` or ``global.`` before the
  id) and as a foundation-model or inference-profile ARN.
- JSON body, checked like Bedrock's JSON-schema validator (``check_stable_image_body``): ``prompt`` (required,
  a string of at most 10000 characters; AWS documents a minimum of 0), ``negative_prompt`` (<= 10000),
  ``aspect_ratio`` (``ASPECT_RATIOS``, default 1:1), ``seed`` (an integer 0-4294967294, Core 0-4294967295 as its
  page says; 0 or absent: random), ``output_format`` (jpeg|png, and webp for SD3.5; default png), ``mode``
  (text-to-image, default, or image-to-image for SD3.5 and Ultra; Core takes text-to-image only), ``image``
  (base64) and ``strength`` (0-1) with ``mode: image-to-image`` only (both required there, and
  ``aspect_ratio`` refused, as on v2beta). Ultra's image-to-image on Bedrock is not documented; the fake takes
  it like SD3.5. Any other key (``cfg_scale``, ``style_preset``, ``text_prompts``...) is extraneous.
  Violations are ValidationException 400 with everit-style texts: one -> ``"Malformed input request:
  #: extraneous key [cfg_scale] is not permitted, please reformat your input and try again."`` (others:
  ``#: required key [prompt] not found``, ``#/aspect_ratio: 4:3 is not a valid enum value``, ``#/seed:
  expected type: Integer, found: String``, ``#/seed: 4294967295 is not less or equal to 4294967294``,
  ``#/strength: -1 is not greater or equal to 0``, ``#/prompt: expected maxLength: 10000, actual: 10001``);
  several -> ``"Malformed input request: 3 schema violations found, please reformat your input and try
  again."``. An ``image`` that is not base64 of a picture with sides >= 64 px is refused with the same
  prefix (that wording is the fake's).
- Success: 200 ``{"seeds": [seed], "finish_reasons": [null], "images": [base64]}``, one picture per call, a
  real PNG/JPEG/WEBP after ``output_format``, sized by ``aspect_ratio``: SD3.5 and Ultra by ``SD3_SIZES``
  (~1 MP, 1:1 1024x1024, 16:9 1344x768...), Core by ``CORE_SIZES`` (1:1 1536x1536 as observed, the other ratios
  the ~1 MP table times 1.5): the tables of ``tests.fakes.stability``. Image-to-image: the entry nearest the
  input's aspect ratio.
- Image Services upscalers (backends.md section 2.4; AWS user guide ``stable-image-services``):
  ``stability.stable-fast-upscale-v1:0`` (``image``, required, base64 with width and height 32-1536 px and
  1,024-1,048,576 pixels; ``output_format`` jpeg|png|webp) answers the picture at 4x;
  ``stability.stable-conservative-upscale-v1:0`` (``image`` with sides >= 64 px, at most 9,437,184 pixels, aspect
  ratio within 1:2.5-2.5:1; ``prompt`` required; ``negative_prompt``, ``seed`` 0-4294967294, ``output_format``,
  ``creativity`` 0.1-0.5) answers about 4 megapixels at the picture's ratio. Both answer ``{seeds,
  finish_reasons, images}`` with the input picture itself resized (so a test sees what was upscaled), and refuse
  other keys like the models above. In ``us-east-1`` a bare upscaler id (no ``us.`` inference profile) is a
  ValidationException ``"Invocation of model ID stability.stable-fast-upscale-v1:0 with on-demand throughput isn't
  supported. Retry your request with the ID or ARN of an inference profile that contains this model."`` (observed,
  backends.md section 2.2). Listed in ``MODELS``.
- Lifecycle: a model in ``retired_models`` answers 404 ResourceNotFoundException ``"This model version has
  reached the end of its life. Please refer to the AWS documentation for more details."`` (``EOL_MESSAGE``);
  one in ``legacy_models`` 404 ResourceNotFoundException ``"Access denied. This Model is marked by provider
  as Legacy and you have not been actively using the model in the last 30 days. Please upgrade to an active
  model on Amazon Bedrock"`` (``LEGACY_MESSAGE``). Both are checked before ``models``, so a retired id need
  not be listed there; both default to empty. ``denied_models``: 403 AccessDeniedException ``"You don't have
  access to the model with the specified model ID."``.
- Bedrock API keys: with ``api_key="..."``, ``Authorization: Bearer <api_key>`` is accepted instead of a
  SigV4 signature (SigV4 still works). Any other bearer token (or any bearer token when ``api_key`` is None)
  -> 403, ``x-amzn-ErrorType: AccessDeniedException`` and body ``{"Message": "Authentication failed: Please
  make sure your API Key is valid."}`` (capital ``M``: the body users quote from the live service; the error
  type is what SDKs reported for it; neither is in AWS's documentation).

Usage::

    async with FakeBedrock(access_key_id="AKIDEXAMPLE", secret_access_key="secret") as fake:
        fake.push_error("ThrottlingException")        # 429 with x-amzn-ErrorType
        fake.push_content_filtered()
        fake.generate_calls[-1].headers["Authorization"]

Constructor: ``FakeBedrock(region="us-east-1", access_key_id="AKIDEXAMPLE",
secret_access_key="fake-secret", session_token=None, models=MODELS, denied_models=(),
verify_signature=True, max_clock_skew=300.0, api_key=None, retired_models=(), legacy_models=())``.
``MODELS`` holds the two SDXL ids and the three current ones. With ``verify_signature=False`` only the
header's shape is checked. With ``session_token`` set, ``X-Amz-Security-Token`` must carry it.

Planned faults (FIFO, one per correctly signed or API-key invoke; common ones in ``tests.fakes.image_api``:
``push_delay``, ``push_disconnect``, ``push_malformed_json``, ``push_not_an_image``, ``push_bomb``,
``push_wrong_size``, ``push_truncated``, ``push_corrupt_pixels``, ``push_response``; on the current models a
wrong-size picture comes in the requested format, the broken ones as they are). They are consumed after
authentication and before the model and body checks, so an unsigned request never eats one:

- ``push_error(error_type, message=None, headers=None)``: the status from ``ERROR_STATUS`` (e.g.
  ThrottlingException 429, ModelTimeoutException 408, ModelErrorException 424, ModelNotReadyException
  429, ServiceUnavailableException 503, InternalServerException 500, ValidationException 400).
- ``push_status(status, error_type, message=None, headers=None)``: any status with any error type.
- ``push_content_filtered(reason=None, *, with_image=False, minimal=False)``: SDXL: a 200 whose artifact has
  ``finishReason: CONTENT_FILTERED`` and a grey image (the arguments are ignored). Current models: 200
  ``{"seeds": [seed], "finish_reasons": [reason], "images": []}`` with ``reason`` defaulting to
  ``"Filter reason: prompt"`` (the documented values: ``FILTER_REASONS``: ``"Filter reason: prompt"``,
  ``"Filter reason: output image"``, ``"Filter reason: input image"``, ``"Inference error"``);
  ``with_image=True`` puts a grey (blurred) picture in ``images``; ``minimal=True`` answers only
  ``{"finish_reasons": [reason]}``, AWS's own example of a filtered answer.

Recorded: ``generate_calls: list[Call]`` (every invoke, signed or not; ``body`` is the parsed JSON) and
``auth_errors: list[str]`` (why each rejected request was rejected).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from aiohttp import web

from tests.fakes.image_api import RESPONSE, Fault, ImageApiFake
from tests.fakes.images import blurred_png
from tests.fakes.stability import (
    ASPECT_RATIOS,
    CORE_SIZES,
    MAX_SEED,
    PROMPT_MAX,
    SD3_SIZES,
    StabilityError,
    blurred_picture,
    check_body,
    image_size,
    nearest_size,
    render_image,
    upscaled,
)

CONTENT_FILTERED = "content_filtered"
SD35_LARGE = "stability.sd3-5-large-v1:0"
IMAGE_CORE = "stability.stable-image-core-v1:1"
IMAGE_ULTRA = "stability.stable-image-ultra-v1:1"
SDXL_MODELS = ("stability.stable-diffusion-xl-v1", "stability.stable-diffusion-xl-v1:0")
FAST_UPSCALE = "stability.stable-fast-upscale-v1:0"
CONSERVATIVE_UPSCALE = "stability.stable-conservative-upscale-v1:0"
UPSCALE_MODELS = (FAST_UPSCALE, CONSERVATIVE_UPSCALE)
MODELS = (*SDXL_MODELS, SD35_LARGE, IMAGE_CORE, IMAGE_ULTRA, *UPSCALE_MODELS)
CONSERVATIVE_PIXELS = 4 * 1024 * 1024
ON_DEMAND_MESSAGE = (
    "Invocation of model ID {model} with on-demand throughput isn't supported. Retry your request with the ID or "
    "ARN of an inference profile that contains this model."
)
PROFILE_PREFIXES = ("us.", "eu.", "apac.", "global.")  # inference profiles: a geography before the model id
SERVICE = "bedrock"
EOL_MESSAGE = (
    "This model version has reached the end of its life. Please refer to the AWS documentation for more details."
)
LEGACY_MESSAGE = (
    "Access denied. This Model is marked by provider as Legacy and you have not been actively using the model in "
    "the last 30 days. Please upgrade to an active model on Amazon Bedrock"
)
BEARER_MESSAGE = "Authentication failed: Please make sure your API Key is valid."
FILTER_REASONS = (
    "Filter reason: prompt",
    "Filter reason: output image",
    "Filter reason: input image",
    "Inference error",
)

ERROR_STATUS: dict[str, int] = {
    "ValidationException": 400,
    "ServiceQuotaExceededException": 400,
    "AccessDeniedException": 403,
    "UnrecognizedClientException": 403,
    "InvalidSignatureException": 403,
    "IncompleteSignatureException": 403,
    "MissingAuthenticationTokenException": 403,
    "ResourceNotFoundException": 404,
    "ModelTimeoutException": 408,
    "ModelErrorException": 424,
    "ThrottlingException": 429,
    "ModelNotReadyException": 429,
    "InternalServerException": 500,
    "ServiceUnavailableException": 503,
}
ERROR_MESSAGES: dict[str, str] = {
    "ValidationException": "Malformed input request, please reformat your input and try again.",
    "ServiceQuotaExceededException": "Your request exceeds the service quota for your account.",
    "AccessDeniedException": "You don't have access to the model with the specified model ID.",
    "UnrecognizedClientException": "The security token included in the request is invalid.",
    "InvalidSignatureException": (
        "The request signature we calculated does not match the signature you provided. Check your AWS "
        "Secret Access Key and signing method. Consult the service documentation for details."
    ),
    "IncompleteSignatureException": "Authorization header requires 'Credential' parameter.",
    "MissingAuthenticationTokenException": "Missing Authentication Token",
    "ResourceNotFoundException": "The requested resource could not be found.",
    "ModelTimeoutException": "Model has timed out in processing the request. Try your request again.",
    "ModelErrorException": "The model encountered an error while processing the request.",
    "ThrottlingException": "Too many requests, please wait before trying again.",
    "ModelNotReadyException": "Model is not ready to serve inference requests. Try your request again.",
    "InternalServerException": "The server encountered an internal error while processing the request.",
    "ServiceUnavailableException": "Service Unavailable. Please try your request again.",
}
AUTH_ERROR_TYPES = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "IncompleteSignatureException",
        "MissingAuthenticationTokenException",
    }
)
_CORAL = "http://internal.amazon.com/coral/"
_AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<akid>[^/\s]+)/(?P<date>\d{8})/(?P<region>[^/\s]+)/(?P<service>[^/\s]+)"
    r"/aws4_request,\s*SignedHeaders=(?P<signed>[a-z0-9\-;]+),\s*Signature=(?P<signature>[0-9a-f]{64})$"
)


class AuthError(Exception):
    """A request AWS would refuse before reaching the model."""

    def __init__(self, error_type: str, message: str | None = None, body_key: str = "message") -> None:
        super().__init__(message or ERROR_MESSAGES[error_type])
        self.error_type = error_type
        self.message = message or ERROR_MESSAGES[error_type]
        self.body_key = body_key  # "Message" in the bearer-key refusal, "message" everywhere else


@dataclass(frozen=True)
class StableImageModel:
    """What Bedrock's schema for one current Stability model admits."""

    modes: tuple[str, ...]
    formats: tuple[str, ...]
    max_seed: int
    sizes: dict[str, tuple[int, int]]

    @property
    def keys(self) -> frozenset[str]:
        base = {"prompt", "negative_prompt", "aspect_ratio", "seed", "output_format", "mode"}
        return frozenset(base | ({"image", "strength"} if "image-to-image" in self.modes else set()))


STABLE_IMAGE_MODELS: dict[str, StableImageModel] = {
    SD35_LARGE: StableImageModel(("text-to-image", "image-to-image"), ("jpeg", "png", "webp"), 4294967294, SD3_SIZES),
    IMAGE_CORE: StableImageModel(("text-to-image",), ("jpeg", "png"), 4294967295, CORE_SIZES),
    IMAGE_ULTRA: StableImageModel(("text-to-image", "image-to-image"), ("jpeg", "png"), 4294967294, SD3_SIZES),
}


@dataclass
class StableImageParams:
    """What a valid request to a current model asks for."""

    prompt: str
    seed: int
    aspect_ratio: str
    output_format: str
    image_size: tuple[int, int] | None  # the input picture's, image-to-image only


def _json_type(value: Any) -> str:
    """The type names of everit (the JSON-schema validator whose messages Bedrock relays)."""
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int):
        return "Integer"
    if isinstance(value, float):
        return "BigDecimal"
    if isinstance(value, str):
        return "String"
    return "JSONArray" if isinstance(value, list) else "JSONObject"


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def malformed(violations: list[str]) -> str:
    """Bedrock's ValidationException text for a body that breaks the model's JSON schema."""
    what = violations[0] if len(violations) == 1 else f"{len(violations)} schema violations found"
    return f"Malformed input request: {what}, please reformat your input and try again."


def check_stable_image_body(body: Any, model: StableImageModel) -> tuple[list[str], StableImageParams | None]:
    """Validate a current model's body like Bedrock's JSON-schema check; the violations, or the parameters."""
    if not isinstance(body, dict):
        return [f"#: expected type: JSONObject, found: {_json_type(body)}"], None
    violations: list[str] = []
    mode = body.get("mode", "text-to-image")
    i2i = mode == "image-to-image" and mode in model.modes  # Core's schema has no image-to-image branch
    if "prompt" not in body:
        violations.append("#: required key [prompt] not found")
    if i2i:
        violations += [f"#: required key [{key}] not found" for key in ("image", "strength") if key not in body]
    allowed = model.keys - ({"aspect_ratio"} if i2i else {"image", "strength"})
    violations += [f"#: extraneous key [{key}] is not permitted" for key in body if key not in allowed]

    def string(key: str, max_length: int | None = None, enum: tuple[str, ...] | None = None) -> None:
        if key not in body:
            return
        value = body[key]
        if not isinstance(value, str):
            violations.append(f"#/{key}: expected type: String, found: {_json_type(value)}")
        elif max_length is not None and len(value) > max_length:
            violations.append(f"#/{key}: expected maxLength: {max_length}, actual: {len(value)}")
        elif enum is not None and value not in enum:
            violations.append(f"#/{key}: {value} is not a valid enum value")

    def number(key: str, low: float, high: float, *, integer: bool) -> None:
        if key not in body:
            return
        value = body[key]
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if not numeric or (integer and not float(value).is_integer()):
            violations.append(
                f"#/{key}: expected type: {'Integer' if integer else 'Number'}, found: {_json_type(value)}"
            )
        elif value < low:
            violations.append(f"#/{key}: {_number_text(value)} is not greater or equal to {_number_text(low)}")
        elif value > high:
            violations.append(f"#/{key}: {_number_text(value)} is not less or equal to {_number_text(high)}")

    string("prompt", PROMPT_MAX)
    string("negative_prompt", PROMPT_MAX)
    string("mode", enum=model.modes)
    if "aspect_ratio" in allowed:
        string("aspect_ratio", enum=ASPECT_RATIOS)
    string("output_format", enum=model.formats)
    number("seed", 0, model.max_seed, integer=True)
    if "image" in allowed:
        string("image")
        number("strength", 0, 1, integer=False)
    if violations:
        return violations, None
    size = None
    if i2i:
        try:
            size = image_size(base64.b64decode(body["image"], validate=True))
        except ValueError:
            size = None
        if size is None:
            return ["#/image: not a base64-encoded picture"], None
        if min(size) < 64:
            return ["#/image: every side must be at least 64 pixels"], None
    params = StableImageParams(
        prompt=body["prompt"],
        seed=int(body.get("seed", 0)),
        aspect_ratio=body.get("aspect_ratio", "1:1"),
        output_format=body.get("output_format", "png"),
        image_size=size,
    )
    return [], params


def check_upscale_body(body: Any, model_id: str) -> tuple[list[str], tuple[int, int], bytes | None]:
    """Validate an upscaler's body like Bedrock's schema check; the violations, the answer's size, the picture."""
    if not isinstance(body, dict):
        return [f"#: expected type: JSONObject, found: {_json_type(body)}"], (0, 0), None
    fast = model_id == FAST_UPSCALE
    allowed = {"image", "output_format"} | (set() if fast else {"prompt", "negative_prompt", "seed", "creativity"})
    required = ("image",) if fast else ("prompt", "image")
    violations = [f"#: required key [{key}] not found" for key in required if key not in body]
    violations += [f"#: extraneous key [{key}] is not permitted" for key in body if key not in allowed]
    for key in ("image", "prompt", "negative_prompt", "output_format"):
        if key in body and not isinstance(body[key], str):
            violations.append(f"#/{key}: expected type: String, found: {_json_type(body[key])}")
    if isinstance(body.get("output_format"), str) and body["output_format"] not in ("jpeg", "png", "webp"):
        violations.append(f"#/output_format: {body['output_format']} is not a valid enum value")
    for key, low, high in (("seed", 0, 4294967294), ("creativity", 0.1, 0.5)):
        if key not in body:
            continue
        value = body[key]
        if not isinstance(value, int | float) or isinstance(value, bool):
            violations.append(f"#/{key}: expected type: Number, found: {_json_type(value)}")
        elif not low <= value <= high:
            violations.append(f"#/{key}: {_number_text(value)} is not within {_number_text(low)}-{_number_text(high)}")
    if violations:
        return violations, (0, 0), None
    try:
        image = base64.b64decode(body["image"], validate=True)
    except ValueError:
        image = b""
    size = image_size(image)
    if size is None:
        return ["#/image: not a base64-encoded picture"], (0, 0), None
    width, height = size
    if fast:
        if not (32 <= width <= 1536 and 32 <= height <= 1536 and 1024 <= width * height <= 1_048_576):
            return ["#/image: width and height must be between 32 and 1536 pixels, 1024 to 1048576 in all"], size, None
        return [], (4 * width, 4 * height), image
    if min(size) < 64 or width * height > 9_437_184 or max(size) / min(size) > 2.5:
        return ["#/image: sides of at least 64 pixels, at most 9437184 pixels, aspect ratio 1:2.5 to 2.5:1"], size, None
    scale = (CONSERVATIVE_PIXELS / (width * height)) ** 0.5
    return [], (round(width * scale), round(height * scale)), image


def base_model_id(raw: str) -> str:
    """The model id behind a path segment: percent-decoded, out of an ARN, without an inference profile's prefix."""
    model_id = unquote(raw)
    if model_id.startswith("arn:"):
        model_id = model_id.rsplit("/", 1)[-1]  # foundation-model/<id> or inference-profile/<profile id>
    for prefix in PROFILE_PREFIXES:
        if model_id.startswith(prefix + "stability.") and model_id[len(prefix) :] not in SDXL_MODELS:
            return model_id[len(prefix) :]  # SDXL v1 never had inference profiles
    return model_id


def error_type_header(error_type: str) -> str:
    """The ``x-amzn-ErrorType`` value AWS sends: the type, a colon, a Coral namespace URL."""
    namespace = "com.amazon.coral.service/" if error_type in AUTH_ERROR_TYPES else "com.amazon.bedrock/"
    return f"{error_type}:{_CORAL}{namespace}"


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = f"AWS4{secret}".encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def canonical_request(
    method: str, raw_path: str, raw_query: str, headers: Iterable[tuple[str, str]], signed: list[str], body: bytes
) -> str:
    """SigV4 canonical request, as AWS (non-S3) computes it from what arrived on the wire."""
    canonical_uri = quote(raw_path or "/", safe="/~")  # the already-encoded path is encoded once more
    pairs = sorted(pair.partition("=")[::2] for pair in raw_query.split("&") if pair)
    canonical_query = "&".join(f"{key}={value}" for key, value in pairs)
    values: dict[str, list[str]] = {}
    for name, value in headers:
        values.setdefault(name.lower(), []).append(" ".join(value.split()))
    lines = "".join(f"{name}:{','.join(values.get(name, []))}\n" for name in signed)
    payload = hashlib.sha256(body).hexdigest()
    return "\n".join([method.upper(), canonical_uri, canonical_query, lines, ";".join(signed), payload])


def sdxl_init_size(body: Any) -> tuple[int, int] | None:
    """The size of an SDXL image-to-image body's ``init_image`` (None: text-to-image). Raises ``StabilityError``
    for the image-to-image fields Bedrock's schema refuses."""
    if not isinstance(body, dict) or "init_image" not in body:
        return None
    try:
        size = image_size(base64.b64decode(body["init_image"], validate=True))
    except (ValueError, TypeError):
        size = None
    if size is None:
        raise StabilityError(400, "bad_request", "init_image: not a base64-encoded picture")
    if body.get("init_image_mode", "IMAGE_STRENGTH") not in ("IMAGE_STRENGTH", "STEP_SCHEDULE"):
        raise StabilityError(400, "bad_request", "init_image_mode: must be IMAGE_STRENGTH or STEP_SCHEDULE")
    strength = body.get("image_strength", 0.35)
    if isinstance(strength, bool) or not isinstance(strength, int | float) or not 0 <= strength <= 1:
        raise StabilityError(400, "bad_request", "image_strength: must be between 0 and 1")
    return size


class FakeBedrock(ImageApiFake):
    """Bedrock runtime InvokeModel for SDXL, with SigV4 checking (see module doc)."""

    def __init__(
        self,
        *,
        region: str = "us-east-1",
        access_key_id: str = "AKIDEXAMPLE",
        secret_access_key: str = "fake-secret",
        session_token: str | None = None,
        models: Iterable[str] = MODELS,
        denied_models: Iterable[str] = (),
        verify_signature: bool = True,
        max_clock_skew: float = 300.0,
        api_key: str | None = None,
        retired_models: Iterable[str] = (),
        legacy_models: Iterable[str] = (),
    ) -> None:
        super().__init__()
        self.api_key = api_key
        self.retired_models = set(retired_models)
        self.legacy_models = set(legacy_models)
        self.region = region
        self.access_key_id = access_key_id
        self.secret_access_key = secret_access_key
        self.session_token = session_token
        self.models = set(models)
        self.denied_models = set(denied_models)
        self.verify_signature = verify_signature
        self.max_clock_skew = max_clock_skew
        self.auth_errors: list[str] = []
        self.app.router.add_post(r"/model/{model_id:.+}/invoke", self._invoke)

    def push_status(
        self, status: int, error_type: str, message: str | None = None, headers: dict[str, str] | None = None
    ) -> Fault:
        merged = {"x-amzn-ErrorType": error_type_header(error_type), **(headers or {})}
        body = {"message": message or ERROR_MESSAGES.get(error_type, error_type)}
        return self.push(Fault(RESPONSE, status=status, body=body, headers=merged))

    def push_error(self, error_type: str, message: str | None = None, headers: dict[str, str] | None = None) -> Fault:
        return self.push_status(ERROR_STATUS[error_type], error_type, message, headers)

    def push_content_filtered(
        self, reason: str | None = None, *, with_image: bool = False, minimal: bool = False
    ) -> Fault:
        options = {"reason": reason or FILTER_REASONS[0], "with_image": with_image, "minimal": minimal}
        return self.push(Fault(CONTENT_FILTERED, options=options))

    def _error(self, error_type: str, message: str | None = None, body_key: str = "message") -> web.Response:
        return web.json_response(
            {body_key: message or ERROR_MESSAGES[error_type]},
            status=ERROR_STATUS[error_type],
            headers={"x-amzn-ErrorType": error_type_header(error_type), "x-amzn-RequestId": str(uuid.uuid4())},
        )

    def _check_auth(self, request: web.Request, body: bytes) -> None:
        header = request.headers.get("Authorization")
        if not header:
            raise AuthError("MissingAuthenticationTokenException")
        if header.startswith("Bearer "):  # a Bedrock API key
            token = header.removeprefix("Bearer ").strip()
            if self.api_key is not None and hmac.compare_digest(token.encode(), self.api_key.encode()):
                return
            raise AuthError("AccessDeniedException", BEARER_MESSAGE, body_key="Message")
        match = _AUTH_RE.match(header.strip())
        if match is None:
            raise AuthError(
                "IncompleteSignatureException",
                f"Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters. "
                f"Authorization={header}",
            )
        amz_date = request.headers.get("X-Amz-Date", "")
        if not re.fullmatch(r"\d{8}T\d{6}Z", amz_date):
            raise AuthError(
                "IncompleteSignatureException",
                "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
            )
        if match["akid"] != self.access_key_id:
            raise AuthError("UnrecognizedClientException")
        if self.session_token is not None and request.headers.get("X-Amz-Security-Token") != self.session_token:
            raise AuthError("UnrecognizedClientException")
        if match["service"] != SERVICE:
            raise AuthError(
                "InvalidSignatureException", f"Credential should be scoped to correct service: '{SERVICE}'. "
            )
        if match["region"] != self.region:
            raise AuthError(
                "InvalidSignatureException",
                f"Credential should be scoped to a valid region, not '{match['region']}'. ",
            )
        if match["date"] != amz_date[:8]:
            raise AuthError(
                "InvalidSignatureException",
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP",
            )
        signed_at = dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
        now = dt.datetime.now(dt.UTC)
        if abs((now - signed_at).total_seconds()) > self.max_clock_skew:
            earliest = (now - dt.timedelta(seconds=self.max_clock_skew)).strftime("%Y%m%dT%H%M%SZ")
            raise AuthError(
                "InvalidSignatureException",
                f"Signature expired: {amz_date} is now earlier than {earliest} "
                f"({now.strftime('%Y%m%dT%H%M%SZ')} - {int(self.max_clock_skew // 60)} min.)",
            )
        signed = match["signed"].split(";")
        if "host" not in signed:
            raise AuthError(
                "InvalidSignatureException", "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."
            )
        if not self.verify_signature:
            return
        raw_path, _, raw_query = request.raw_path.partition("?")
        canonical = canonical_request(request.method, raw_path, raw_query, request.headers.items(), signed, body)
        scope = f"{match['date']}/{match['region']}/{SERVICE}/aws4_request"
        string_to_sign = "\n".join(
            ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
        )
        key = signing_key(self.secret_access_key, match["date"], match["region"], SERVICE)
        expected = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, match["signature"]):
            raise AuthError(
                "InvalidSignatureException",
                ERROR_MESSAGES["InvalidSignatureException"]
                + f"\n\nThe Canonical String for this request should have been\n'{canonical}'\n\n"
                f"The String-to-Sign should have been\n'{string_to_sign}'\n",
            )

    async def _invoke(self, request: web.Request) -> web.StreamResponse:
        call = await self.record_generate(request)
        try:
            self._check_auth(request, call.raw_body)
        except AuthError as exc:
            self.auth_errors.append(f"{exc.error_type}: {exc.message}")
            return self._error(exc.error_type, exc.message, exc.body_key)
        fault = self.take_fault()
        planned = await self.answer_generic_fault(request, fault)
        if planned is not None:
            return planned

        model_id = base_model_id(request.match_info["model_id"])
        if (
            model_id in UPSCALE_MODELS
            and self.region == "us-east-1"
            and unquote(request.match_info["model_id"]) == model_id
        ):
            return self._error("ValidationException", ON_DEMAND_MESSAGE.format(model=model_id))
        if model_id in self.retired_models:
            return self._error("ResourceNotFoundException", EOL_MESSAGE)
        if model_id in self.legacy_models:
            return self._error("ResourceNotFoundException", LEGACY_MESSAGE)
        if model_id not in self.models:
            return self._error("ValidationException", "The provided model identifier is invalid.")
        if model_id in self.denied_models:
            return self._error("AccessDeniedException")
        if model_id in STABLE_IMAGE_MODELS:
            return self._stable_image(call.body, STABLE_IMAGE_MODELS[model_id], fault)
        if model_id in UPSCALE_MODELS:
            return self._upscale(call.body, model_id, fault)
        if call.body is None:
            return self._error(
                "ValidationException", "Malformed input request, please reformat your input and try again."
            )
        try:
            params = check_body(
                call.body, sdxl=True, max_steps=150, default_size=1024, init_size=sdxl_init_size(call.body)
            )
        except StabilityError as exc:
            message = f"Malformed input request: {exc.name}: {exc.message}, please reformat your input and try again."
            return self._error("ValidationException", message)
        if params["samples"] != 1:
            message = (
                "Malformed input request: #/samples: 1 is the only supported value, "
                "please reformat your input and try again."
            )
            return self._error("ValidationException", message)

        seed = params["seed"] or self.draw_seed()
        if fault is not None and fault.kind == CONTENT_FILTERED:
            image, reason = blurred_png(params["width"], params["height"]), "CONTENT_FILTERED"
        else:
            image, reason = self.image(fault, params["width"], params["height"], seed), "SUCCESS"
        artifact = {"seed": seed % (MAX_SEED + 1), "base64": base64.b64encode(image).decode(), "finishReason": reason}
        headers = {"x-amzn-RequestId": str(uuid.uuid4()), "X-Amzn-Bedrock-Invocation-Latency": "4321"}
        return web.json_response({"result": "success", "artifacts": [artifact]}, headers=headers)

    def _upscale(self, body: Any, model_id: str, fault: Fault | None) -> web.Response:
        """InvokeModel for an Image Services upscaler: the picture, bigger, as ``{seeds, finish_reasons, images}``."""
        if body is None:
            return self._error("ValidationException", ERROR_MESSAGES["ValidationException"])
        violations, (width, height), image = check_upscale_body(body, model_id)
        if violations or image is None:
            return self._error("ValidationException", malformed(violations))
        seed = int(body.get("seed", 0)) or self.rng.randint(1, 4294967294)
        fmt = body.get("output_format", "png")
        headers = {"x-amzn-RequestId": str(uuid.uuid4()), "X-Amzn-Bedrock-Invocation-Latency": "4321"}
        if fault is not None and fault.kind == CONTENT_FILTERED:
            reason = fault.options.get("reason") or FILTER_REASONS[0]
            return web.json_response({"seeds": [seed], "finish_reasons": [reason], "images": []}, headers=headers)
        picture = (
            upscaled(image, width, height, fmt)
            if fault is None
            else render_image(self, fault, width, height, seed, fmt)
        )
        answer = {"seeds": [seed], "finish_reasons": [None], "images": [base64.b64encode(picture).decode()]}
        return web.json_response(answer, headers=headers)

    def _stable_image(self, body: Any, model: StableImageModel, fault: Fault | None) -> web.Response:
        """InvokeModel for SD3.5 Large, Stable Image Core and Ultra: ``{seeds, finish_reasons, images}``."""
        if body is None:
            return self._error("ValidationException", ERROR_MESSAGES["ValidationException"])
        violations, params = check_stable_image_body(body, model)
        if params is None:
            return self._error("ValidationException", malformed(violations))
        if params.image_size is not None:
            width, height = nearest_size(model.sizes, *params.image_size)
        else:
            width, height = model.sizes[params.aspect_ratio]
        seed = params.seed or self.rng.randint(1, 4294967294)
        fmt = params.output_format
        headers = {"x-amzn-RequestId": str(uuid.uuid4()), "X-Amzn-Bedrock-Invocation-Latency": "4321"}
        if fault is not None and fault.kind == CONTENT_FILTERED:
            reason = fault.options.get("reason") or FILTER_REASONS[0]
            if fault.options.get("minimal"):
                return web.json_response({"finish_reasons": [reason]}, headers=headers)
            blurred = [blurred_picture(width, height, fmt)] if fault.options.get("with_image") else []
            images = [base64.b64encode(picture).decode() for picture in blurred]
            answer = {"seeds": [seed], "finish_reasons": [reason], "images": images}
            return web.json_response(answer, headers=headers)
        image = render_image(self, fault, width, height, seed, fmt)
        answer = {"seeds": [seed], "finish_reasons": [None], "images": [base64.b64encode(image).decode()]}
        return web.json_response(answer, headers=headers)
