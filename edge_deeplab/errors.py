"""The errors users see: one line naming the file (or option) and what is wrong.

Every one is a UserError, so the CLI prints ``error: <message>`` and exits 2 with no traceback; library
callers can tell the kinds apart without matching message text.
"""


class UserError(Exception):
    """Bad input or an unmet requirement, said in one line."""


class ModelFileError(UserError):
    """A model file (.tflite, .keras, .h5) is missing, unreadable, damaged or not the model expected."""


class DataError(UserError):
    """A dataset, image, video, label or calibration file is missing, unreadable or malformed."""


class OptionError(UserError):
    """An option, or a combination of options, that cannot be honoured."""
