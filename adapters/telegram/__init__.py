"""Telegram: ``/draw`` in private chats and groups through python-telegram-bot (see :mod:`.adapter`)."""

from adapters.telegram.adapter import TelegramAdapter

__all__ = ["TelegramAdapter"]
