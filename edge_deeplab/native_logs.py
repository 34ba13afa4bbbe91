"""TensorFlow's native logging, kept off the terminal unless asked for.

TensorFlow and the libraries under it (absl, XLA, the TFLite converter and runtime) write C++ log lines
straight to file descriptor 2 -- CUDA stubs, cuInit failures, CPU-feature notes, MLIR pass reports, the
XNNPACK delegate -- many before any setting can reach them ($TF_CPP_MIN_LOG_LEVEL stops only some). A
command-line process therefore points fd 2 at /dev/null and gives Python's ``sys.stderr`` a duplicate of
the real stderr: the product's own lines, progress bars, warnings and tracebacks still reach the terminal;
only what is written below Python vanishes, with the Python warnings that TensorFlow and tfmot raise about
their own internals (deprecations, "statistics for quantized inputs were expected"). ``edge-deeplab
--verbose VERB`` keeps everything.
"""
from __future__ import annotations

import faulthandler
import logging
import os
import sys
import warnings

# packages whose own Python warnings are about their internals, not about the user's model or data
QUIET_PACKAGES = r"(tensorflow|tf_keras|keras|tensorflow_model_optimization|absl|google\.protobuf)(\.|$)"


def silence_native_stderr():
    """Native writes to fd 2 go to /dev/null from now on; Python's sys.stderr keeps the real stderr."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    for name in ("tensorflow", "absl"):  # TensorFlow's Python-side notices ("WARNING:tensorflow:...")
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=QUIET_PACKAGES)
    try:
        sys.stderr.flush()
        real = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable stderr (closed, or not a file): nothing to keep clean
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    encoding = getattr(sys.stderr, "encoding", None) or "utf-8"
    sys.stderr = os.fdopen(real, "w", buffering=1, encoding=encoding, errors="backslashreplace")
    faulthandler.enable(file=sys.stderr)  # a crash inside native code still says where
