"""The ``sdbot`` command's exit codes, shared by every command (README.md's table lists them)."""

EXIT_OK = 0  # success
EXIT_FAILED = 1  # the generation, a probe or a service failed
EXIT_INVALID = 2  # invalid input: the /draw text or a command's arguments
EXIT_CONFIG = 3  # invalid configuration: a variable, no chat token, a database that cannot be used
