"""A job's life: its record, the fair scheduler, the outage breaker, one generation, progress, retention."""
