"""Errors a person can see. Each carries a stable code and the parameters of its localized message."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class SdbotError(Exception):
    """Base of every documented error. ``code`` names the catalog message ``error.<code>``."""

    code: str = "internal"

    def __init__(self, code: str | None = None, /, *, option: str | None = None, **params: Any) -> None:
        if code is not None:
            self.code = code
        self.option = option
        self.params: dict[str, Any] = dict(params)
        super().__init__(self.code)

    @property
    def message_keys(self) -> tuple[str, ...]:
        """Catalog keys to try, most specific first."""
        return (f"error.{self.code}",)

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "option": self.option}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, option={self.option!r}, params={self.params!r})"


class DrawError(SdbotError):
    """The user's /draw text or options are invalid: nothing was queued, nothing charged."""


class ConfigError(SdbotError):
    """The operator's configuration is invalid. ``variable`` is always named in the message; several
    variables (all the missing ones, so the operator fixes them in one go) are listed in the reader's language."""

    def __init__(self, code: str, /, *, variable: str | Sequence[str], **params: Any) -> None:
        names = [variable] if isinstance(variable, str) else list(variable)
        super().__init__(code, option=None, variable=names[0] if len(names) == 1 else names, **params)
        self.variable = ", ".join(names)
        self.variables = tuple(names)

    def as_dict(self) -> dict[str, Any]:
        return {**super().as_dict(), "variable": self.variable}


def db_unavailable(path: object, reason: object) -> ConfigError:
    """``SDBOT_DB`` cannot be used: the error every layer that touches the database raises, with the reason."""
    return ConfigError("db_unavailable", variable="SDBOT_DB", path=str(path), reason=str(reason))


# The outcomes a backend failure maps to. Kept as data so adapters, the job runner and docs agree.
BACKEND_ERROR_CODES: Mapping[str, str] = {
    "backend_invalid_request": "the provider rejected the request's parameters",
    "content_filtered": "the provider's safety filter blocked the image",
    "backend_rate_limited": "the provider is rate limiting; try again later",
    "backend_quota_exhausted": "the provider quota or billing is exhausted (operator must act)",
    "backend_auth_failed": "the bot's credentials were refused (operator must act)",
    "backend_config": "the backend is misconfigured (operator must act)",
    "backend_unavailable": "the provider failed or is unreachable",
    "backend_timeout": "the provider did not answer in time",
    "backend_bad_image": "the provider returned something that is not the expected image",
}


class BackendError(SdbotError):
    """An image API failed. ``user_fault`` is true only when the user's request itself was the cause.

    ``provider`` and ``provider_code`` identify the provider's own error (e.g. Qianfan 110) for logs and, where
    the catalog has a message ``<provider>.<provider_code>``, for the text users see.
    """

    def __init__(
        self,
        code: str,
        /,
        *,
        provider: str | None = None,
        provider_code: str | int | None = None,
        retry_after: float | None = None,
        user_fault: bool = False,
        **params: Any,
    ) -> None:
        if code not in BACKEND_ERROR_CODES:
            raise ValueError(f"undocumented backend error code {code!r}")
        super().__init__(code, **params)
        self.provider = provider
        self.provider_code = provider_code
        self.retry_after = retry_after
        self.user_fault = user_fault

    @property
    def message_keys(self) -> tuple[str, ...]:
        # A provider-specific message (e.g. qianfan.110) says more than the generic one, where it exists.
        if self.provider and self.provider_code is not None:
            return (f"{self.provider}.{self.provider_code}", f"error.{self.code}")
        return (f"error.{self.code}",)

    def as_dict(self) -> dict[str, Any]:
        data = super().as_dict()
        if self.provider:
            data["provider"] = self.provider
            data["provider_code"] = self.provider_code
        return data
