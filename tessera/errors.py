"""The one exception type for bad input: the CLI prints its message on one line and exits with code 2."""


class UserError(ValueError):
    """Bad input from the user (a prompt, a file, a config value); the message names the problem."""
