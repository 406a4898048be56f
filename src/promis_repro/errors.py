"""Errors that end a command with one line naming the culprit (no traceback)."""


class UserError(Exception):
    """Bad input from the user: a malformed file, an unknown name, a missing data file."""
