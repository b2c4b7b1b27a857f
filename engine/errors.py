"""Errors a user can act on."""


class XsiftError(Exception):
    """A problem with the user's input or options, said in one actionable message.

    The message names the file, the column and what was expected. The CLI prints
    it without a traceback and exits with status 2.
    """


class SchemaError(XsiftError):
    """A catalogue does not have what the chosen preset needs."""
