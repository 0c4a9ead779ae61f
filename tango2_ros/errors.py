"""Errors that are the user's to fix: the CLI prints them as one line and exits with code 2, never a traceback."""


class UserError(Exception):
    """Bad input from a person or a file: the message says what is wrong and where."""
