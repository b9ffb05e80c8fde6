"""A1111's sampler names (the seed document's and the /draw option's) as ComfyUI's ``sampler_name`` and
``scheduler``: the name without its " Karras" or " Exponential" is the sampler, that suffix the scheduler."""

from __future__ import annotations

from collections.abc import Mapping

# A1111 name without a schedule suffix -> ComfyUI sampler_name (reference/backends.md, "A1111 sampler label").
SAMPLER_NAMES: Mapping[str, str] = {
    "Euler a": "euler_ancestral",
    "Euler": "euler",
    "LMS": "lms",
    "Heun": "heun",
    "DPM2": "dpm_2",
    "DPM2 a": "dpm_2_ancestral",
    "DPM++ 2S a": "dpmpp_2s_ancestral",
    "DPM++ 2M": "dpmpp_2m",
    "DPM++ SDE": "dpmpp_sde",
    "DPM++ 2M SDE": "dpmpp_2m_sde",
    "DPM++ 3M SDE": "dpmpp_3m_sde",
    "DPM fast": "dpm_fast",
    "DPM adaptive": "dpm_adaptive",
    "DDIM": "ddim",
    "UniPC": "uni_pc",
    "LCM": "lcm",
}
SCHEDULES: Mapping[str, str] = {" Karras": "karras", " Exponential": "exponential"}
DEFAULT_SCHEDULER = "normal"  # what A1111's "Automatic" is for these samplers
OWN_SCHEDULER: Mapping[str, str] = {"ddim": "ddim_uniform"}


def comfy_sampler(name: str) -> tuple[str, str] | None:
    """``"DPM++ 2M Karras"`` -> ``("dpmpp_2m", "karras")``; None for a name ComfyUI has no sampler for."""
    base, scheduler = name, None
    for suffix, schedule in SCHEDULES.items():
        if name.endswith(suffix):
            base, scheduler = name.removesuffix(suffix), schedule
    sampler = SAMPLER_NAMES.get(base)
    if sampler is None:
        return None
    return sampler, scheduler or OWN_SCHEDULER.get(sampler, DEFAULT_SCHEDULER)


def offered(names: tuple[str, ...], samplers: frozenset[str], schedulers: frozenset[str]) -> tuple[str, ...]:
    """Those of ``names`` (A1111's) whose sampler and scheduler the server has, in their order."""
    out = []
    for name in names:
        pair = comfy_sampler(name)
        if pair is not None and pair[0] in samplers and pair[1] in schedulers:
            out.append(name)
    return tuple(out)
