"""Image backends, chosen by ``SDBOT_BACKEND``. Modules are imported only when selected, so an optional
dependency (botocore for Bedrock) is needed only by the operators who use it."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from bot.backends.base import Backend, CheckReport, GeneratedImage, ProgressCallback

if TYPE_CHECKING:
    from bot.config import Settings

__all__ = ["REGISTRY", "Backend", "CheckReport", "GeneratedImage", "ProgressCallback", "create_backend"]

# SDBOT_BACKEND value -> "module:Class", or "module:function" for a service whose settings choose between APIs
REGISTRY: dict[str, str] = {
    "placeholder": "bot.backends.placeholder:PlaceholderBackend",
    "qianfan": "bot.backends.qianfan_v2:qianfan_backend",
    "stability": "bot.backends.stability_v2:stability_backend",
    "bedrock": "bot.backends.bedrock:BedrockBackend",
    "modelslab": "bot.backends.modelslab:ModelsLabBackend",
    "a1111": "bot.backends.a1111:A1111Backend",
    "comfyui": "bot.backends.comfyui.backend:ComfyUIBackend",
    "openai": "bot.backends.openai_images:OpenAIImagesBackend",
}


def create_backend(settings: Settings) -> Backend:
    """The configured backend. Raises ``ConfigError`` when its variables are missing or wrong."""
    from bot.errors import ConfigError
    from bot.messages.i18n import Msg

    if settings.backends:
        from bot.backends.pool import PoolBackend

        return PoolBackend.build(settings, create_backend)
    target = REGISTRY.get(settings.backend)
    if target is None:
        raise ConfigError(
            "config_invalid",
            variable="SDBOT_BACKEND",
            value=settings.backend,
            expected=Msg("config.expect.choice", {"choices": tuple(REGISTRY)}),
        )
    module_name, class_name = target.split(":")
    target = getattr(importlib.import_module(module_name), class_name)
    if isinstance(target, type) and issubclass(target, Backend):
        return target.from_settings(settings)
    backend: Backend = target(settings)
    return backend
