"""A fake AWS Bedrock runtime serving stability.stable-diffusion-xl-v1, on 127.0.0.1.

Wire format (reference: shared/reference/backends.md, seed 003):

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

Usage::

    async with FakeBedrock(access_key_id="AKIDEXAMPLE", secret_access_key="secret") as fake:
        fake.push_error("ThrottlingException")        # 429 with x-amzn-ErrorType
        fake.push_content_filtered()
        fake.generate_calls[-1].headers["Authorization"]

Constructor: ``FakeBedrock(region="us-east-1", access_key_id="AKIDEXAMPLE",
secret_access_key="fake-secret", session_token=None, models=MODELS, denied_models=(),
verify_signature=True, max_clock_skew=300.0)``. With ``verify_signature=False`` only the header's shape is
checked. With ``session_token`` set, ``X-Amz-Security-Token`` must carry it.

Planned faults (FIFO, one per correctly signed invoke; common ones in ``tests.fakes.image_api``: ``push_delay``,
``push_disconnect``, ``push_malformed_json``, ``push_not_an_image``, ``push_bomb``, ``push_wrong_size``,
``push_response``). They are consumed after authentication, so an unsigned request never eats one:

- ``push_error(error_type, message=None, headers=None)``: the status from ``ERROR_STATUS`` (e.g.
  ThrottlingException 429, ModelTimeoutException 408, ModelErrorException 424, ModelNotReadyException
  429, ServiceUnavailableException 503, InternalServerException 500, ValidationException 400).
- ``push_status(status, error_type, message=None, headers=None)``: any status with any error type.
- ``push_content_filtered()``: 200 whose artifact has ``finishReason: CONTENT_FILTERED`` and a grey image.

Recorded: ``generate_calls: list[Call]`` (every invoke, signed or not) and ``auth_errors: list[str]``
(why each rejected request was rejected).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import re
import uuid
from collections.abc import Iterable
from urllib.parse import quote, unquote

from aiohttp import web

from tests.fakes.image_api import RESPONSE, Fault, ImageApiFake
from tests.fakes.images import blurred_png
from tests.fakes.stability import MAX_SEED, StabilityError, check_body

CONTENT_FILTERED = "content_filtered"
MODELS = ("stability.stable-diffusion-xl-v1", "stability.stable-diffusion-xl-v1:0")
SERVICE = "bedrock"

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

    def __init__(self, error_type: str, message: str | None = None) -> None:
        super().__init__(message or ERROR_MESSAGES[error_type])
        self.error_type = error_type
        self.message = message or ERROR_MESSAGES[error_type]


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
    ) -> None:
        super().__init__()
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

    def push_content_filtered(self) -> Fault:
        return self.push(Fault(CONTENT_FILTERED))

    def _error(self, error_type: str, message: str | None = None) -> web.Response:
        return web.json_response(
            {"message": message or ERROR_MESSAGES[error_type]},
            status=ERROR_STATUS[error_type],
            headers={"x-amzn-ErrorType": error_type_header(error_type), "x-amzn-RequestId": str(uuid.uuid4())},
        )

    def _check_auth(self, request: web.Request, body: bytes) -> None:
        header = request.headers.get("Authorization")
        if not header:
            raise AuthError("MissingAuthenticationTokenException")
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
            return self._error(exc.error_type, exc.message)
        fault = self.take_fault()
        planned = await self.answer_generic_fault(request, fault)
        if planned is not None:
            return planned

        model_id = unquote(request.match_info["model_id"])
        model_id = model_id.split("foundation-model/", 1)[-1] if model_id.startswith("arn:") else model_id
        if model_id not in self.models:
            return self._error("ValidationException", "The provided model identifier is invalid.")
        if model_id in self.denied_models:
            return self._error("AccessDeniedException")
        if call.body is None:
            return self._error(
                "ValidationException", "Malformed input request, please reformat your input and try again."
            )
        try:
            params = check_body(call.body, sdxl=True, max_steps=150, default_size=1024)
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
