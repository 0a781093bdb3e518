"""
The one error hierarchy: every error that describes bad user input derives from UserError.

The CLI prints a UserError as one line (`trpo-ros: error: ...`, exit 2) and the nodes report it
at start-up as one `[ERROR]` line (exit 2); anything else is a bug and keeps its traceback.
This module imports nothing, so every layer can use it.
"""


class UserError(ValueError):
    """Bad input (a file, a parameter, a config value); the one-line message says what and why."""


class ParameterError(UserError):
    """A node parameter that cannot be used; the message names it."""
