"""The ``sdbot`` command line: draw, run, check and the operator commands."""
