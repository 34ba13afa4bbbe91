"""Warnings and notes of the library go through ``logging`` (logger ``edge_deeplab``).

A notebook or another program sees them through its own logging set-up (unconfigured, Python prints
warnings on stderr); the CLI shows them as ``warning: ...`` / ``note: ...`` lines on stderr.
"""
from __future__ import annotations

import logging
import sys

LOGGER = logging.getLogger("edge_deeplab")


def warn(message: str):
    """Something the user should know changes what the results mean."""
    LOGGER.warning(message)


def note(message: str):
    """Something worth a line that changes nothing (shown by the CLI; info level elsewhere)."""
    LOGGER.info(message)


class _StderrLines(logging.Handler):
    """``warning: <message>`` on whatever sys.stderr is when the record comes (tests swap it)."""

    def emit(self, record):
        try:
            print(f"{record.levelname.lower().replace('info', 'note')}: {record.getMessage()}", file=sys.stderr)
        except Exception:  # a closed stream must not turn a warning into a crash
            self.handleError(record)


def show_on_stderr():
    """Send the library's warnings and notes to stderr as one line each (once per process)."""
    if not any(isinstance(h, _StderrLines) for h in LOGGER.handlers):
        LOGGER.addHandler(_StderrLines())
    LOGGER.setLevel(logging.INFO)
    LOGGER.propagate = False
