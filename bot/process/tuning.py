"""Process-wide settings that keep the event loop responsive: applied by ``sdbot run`` (:mod:`adapters.runner`)
once the core has started, never by a library-style ``Core`` in tests or tools."""

from __future__ import annotations

import ctypes
import gc
import logging
import platform

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
MMAP_THRESHOLD = 128 * 1024
_tuned = False


def settle() -> None:
    """Freeze what is loaded (see the module docstring) and, once per process, fix glibc's mmap threshold."""
    global _tuned
    gc.freeze()
    if _tuned:
        return
    _tuned = True
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return
    try:
        libc = ctypes.CDLL(None)
        if not libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD):
            log.debug("mallopt(M_MMAP_THRESHOLD) refused")
    except (OSError, AttributeError):
        log.debug("mallopt unavailable")


def release() -> None:
    """Let the collector see again what :func:`settle` froze (it may be garbage by now)."""
    gc.unfreeze()
