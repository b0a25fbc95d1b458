"""The one exception type for bad input to the suite (unknown case, malformed file, bad option): the command
line prints its message as one line and exits with status 2."""


class UsageError(Exception):
    """Bad input from the person running the suite."""
