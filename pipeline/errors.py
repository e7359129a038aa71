"""The one exception type for bad user input: reported as one line, never as a traceback."""


class ConfigError(ValueError):
    """Bad user input: reported as one line, never as a traceback."""
