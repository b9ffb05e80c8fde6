"""Prompt moderation: the operators' block list (words and patterns), matched against what people type in a way the
usual evasions do not get past (see :mod:`bot.moderation.fold`)."""
