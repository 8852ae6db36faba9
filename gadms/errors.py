"""Errors a user can fix: bad config, bad input path, bad data. Entry points print them as one line."""


class UserError(Exception):
    """A problem with what the user gave us (a config field, a path, an input row), not a bug.

    The message must say what is wrong and where (the field, the path or the row), in one line.
    """


class ConfigError(UserError):
    """A config file or override that does not load or does not validate."""
