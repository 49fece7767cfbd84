"""tessera's own exceptions. Each message names the problem in one line; the CLI prints it and exits with code 2.

Anything else that escapes (a full disk, a bug) is not bad input, and the CLI says what it is.
"""


class TesseraError(Exception):
    """The base of every error tessera raises about what it was given."""


def one_line(error: Exception) -> str:
    """The line a user sees for an error: 'error: ' and its message on one line (the CLI's stderr, the app's page)."""
    return f"error: {' '.join(str(error).split())}"


class ConfigError(TesseraError, ValueError):
    """A config key or value that cannot be used (an unknown key, a wrong type, a value out of range)."""


class InputError(TesseraError, ValueError):
    """A prompt, question, image, file or folder that cannot be used."""


class CheckpointError(TesseraError, ValueError):
    """A checkpoint that is missing, corrupt, or does not fit what it is loaded into or asked to do."""


class DivergedError(TesseraError):
    """A run whose loss, gradients or weights stopped being finite; the last checkpoint is kept. Exit code 1."""
