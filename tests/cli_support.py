"""Running the installed ``sdbot`` executable the way an operator does, for the CLI's tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SDBOT = Path(sys.executable).parent / "sdbot"


def sdbot(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``sdbot ARGS`` in ``cwd`` with ``env`` over a clean environment; never a traceback on stderr."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("SDBOT_", "TELEGRAM_", "DISCORD_"))}
    environment.update(env)
    out = subprocess.run(
        [str(SDBOT), *args], capture_output=True, text=True, env=environment, cwd=cwd, timeout=60, check=False
    )
    assert "Traceback" not in out.stderr and "Exception" not in out.stderr, out.stderr
    return out
