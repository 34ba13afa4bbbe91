"""Native (C++) log lines stay off the terminal of a command-line process; the product's own lines do not."""
import os
import re
import subprocess
import sys

import pytest

NATIVE = re.compile(r"^([IWEF]\d{4} |WARNING: All log messages before absl|To enable the following instructions)", re.M)


def run(*args, code=None):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    command = [sys.executable, "-c", code] if code else [sys.executable, "-m", "edge_deeplab", *map(str, args)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def test_native_writes_vanish_and_python_writes_stay():
    done = run(code="import os, sys\n"
                    "from edge_deeplab.native_logs import silence_native_stderr\n"
                    "silence_native_stderr()\n"
                    "os.write(2, b'native line\\n')\n"
                    "print('own line', file=sys.stderr)\n"
                    "import warnings\n"
                    "warnings.warn_explicit('about its internals', UserWarning, 'convert.py', 1, "
                    "module='tensorflow.lite.python.convert')\n"
                    "warnings.warn_explicit('about the data', UserWarning, 'mine.py', 1, module='mine')\n"
                    "raise SystemExit(3)")
    assert done.returncode == 3
    assert done.stderr.startswith("own line\n") and "about the data" in done.stderr
    assert "about its internals" not in done.stderr


@pytest.mark.slow  # a TensorFlow verb in a subprocess
def test_a_tensorflow_verb_prints_only_its_own_lines(tmp_path):
    quiet = run("build", "-d", "0.35", "--input-size", "33", "--num-classes", "2", "-o", tmp_path / "a.keras")
    assert quiet.returncode == 0, quiet.stderr
    assert not NATIVE.search(quiet.stderr), quiet.stderr
    assert f"saved {tmp_path / 'a.keras'}" in quiet.stdout + quiet.stderr
    loud = run("--verbose", "build", "-d", "0.35", "--input-size", "33", "--num-classes", "2", "-o",
               tmp_path / "b.keras")
    assert loud.returncode == 0 and NATIVE.search(loud.stderr), loud.stderr  # TensorFlow's own lines, kept


def test_errors_still_reach_the_terminal(tmp_path):
    done = run("eval", tmp_path / "missing.tflite", "--data", tmp_path, "--format", "folder")
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: {tmp_path / 'missing.tflite'}: model file not found"
