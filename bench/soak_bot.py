"""``python -m bench.soak_bot``: ``sdbot run`` exactly as shipped, for the soak (:mod:`bench.soak`).

Discord's address is not configurable (the bot only ever talks to discord.com), so this launcher points
discord.py at the local fake first, the same two settings ``FakeDiscord.patch_discord`` changes in-process:
``SOAK_DISCORD_API`` (REST base, ``http://127.0.0.1:PORT/api/v10``) and ``SOAK_DISCORD_GATEWAY``
(``ws://127.0.0.1:PORT/gateway``). Everything else (settings, logging, redaction, adapters, core) is
``python -m bot run``'s own code path.
"""

from __future__ import annotations

import os
import sys


def main() -> int:
    api, gateway = os.environ.get("SOAK_DISCORD_API"), os.environ.get("SOAK_DISCORD_GATEWAY")
    if api and gateway:
        import yarl
        from discord.gateway import DiscordWebSocket
        from discord.http import Route

        Route.BASE = api  # read when each Route is built, so before the client makes any request
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway)

    from bot.cli.main import main as sdbot

    return sdbot(["run"])


if __name__ == "__main__":
    sys.exit(main())
