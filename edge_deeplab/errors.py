"""The one error type users see: a one-line message naming the file and what is wrong."""


class UserError(Exception):
    """Bad input or an unmet requirement. The CLI prints ``error: <message>`` and exits 2, no traceback."""
