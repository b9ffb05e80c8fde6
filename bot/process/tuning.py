"""Process-wide settings that keep the event loop responsive: applied by ``sdbot run`` (:mod:`adapters.runner`)
once the core has started, never by a library-style ``Core`` in tests or tools.

Two things held the loop for 30-60 ms at a time in ``python -m bench`` (a 2-core VM), and both come from the
process, not from sdbot's code:

* **Full garbage collections.** Each walks every object the process has, and with discord.py and PTB loaded
  that is ~85,000 objects and ~60 ms, on whichever thread triggers it (usually the loop's). Everything loaded
  before the core starts lives as long as the process, so :func:`settle` freezes it (``gc.freeze()``): the
  collector no longer walks it. :func:`release` (at ``Core.close``) gives it back, so a test process that
  builds many cores leaks nothing.
* **glibc heap trimming.** A picture is decoded on the CPU thread (:mod:`bot.process.cpu`) and let go on the loop's.
  glibc serves large blocks from the thread's heap once its adaptive mmap threshold has grown, and freeing
  them there may shrink that heap (``madvise``/``munmap`` under a lock): measured up to 35 ms for one job's
  four 1024x1024 pictures. A fixed threshold (glibc's initial 128 KiB) makes every picture its own mapping,
  returned at once in well under a millisecond, and the memory goes back to the system as soon as a job ends.
  Elsewhere (musl, macOS) nothing is changed.
"""

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
