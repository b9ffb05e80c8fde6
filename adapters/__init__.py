"""Chat platforms. Each adapter translates platform events into :class:`bot.core.Core` calls and core results
into platform messages; the core never imports an adapter. ``sdbot run`` (:mod:`adapters.runner`) starts every
adapter whose token is configured, around one shared core."""
