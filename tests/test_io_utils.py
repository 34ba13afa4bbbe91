"""Atomic writes: leftovers of killed processes are recognised and removed, unwritable outputs are one-line
errors, and the checks that run before long work."""
import os
import subprocess
import sys

import pytest

from edge_deeplab.errors import UserError
from edge_deeplab.io_utils import (atomic_path, check_writable, remove_leftovers, require_file, write_bytes_atomic,
                                   write_text_atomic)


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_leftovers_of_dead_processes_are_removed_by_the_next_write(tmp_path):
    target = tmp_path / "m.tflite"
    dead = tmp_path / f".m.tflite.partial-{_dead_pid()}-abc.tflite"
    alive = tmp_path / f".m.tflite.partial-{os.getppid()}-def.tflite"  # a running process: not ours to remove
    other = tmp_path / ".other.tflite.partial-1-x.tflite"
    for path in (dead, alive, other):
        path.write_bytes(b"half")
    write_bytes_atomic(target, b"whole")
    assert target.read_bytes() == b"whole"
    assert not dead.exists() and alive.exists() and other.exists()
    assert remove_leftovers(target) == []


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "a.txt"
    write_text_atomic(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("new, half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_unwritable_outputs_are_one_line_errors(tmp_path):
    (tmp_path / "file").write_text("x")
    for path in (tmp_path / "file" / "out.json", tmp_path / "file" / "sub" / "out.json"):
        with pytest.raises(UserError, match="cannot write .a parent path is a file"):
            check_writable(path)
        with pytest.raises(UserError, match="cannot write"):
            write_text_atomic(path, "{}")
    with pytest.raises(UserError, match="is a folder; expected a file path"):
        write_text_atomic(tmp_path, "x")
    assert check_writable(tmp_path / "new" / "dir", folder=True).is_dir()
    assert sorted(p.name for p in (tmp_path / "new" / "dir").iterdir()) == []  # the probe file is gone


def test_read_only_folder_without_root_powers(tmp_path):
    """Root writes through chmod 555: drop the capabilities in a child (util-linux setpriv)."""
    setpriv = "/usr/bin/setpriv"
    if not os.path.exists(setpriv):
        pytest.skip("setpriv (util-linux) is not installed")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    code = ("from edge_deeplab.io_utils import check_writable\n"
            "from edge_deeplab.errors import UserError\n"
            f"try:\n    check_writable({str(ro / 'out.tflite')!r})\nexcept UserError as e:\n    print(e)\n")
    out = subprocess.run([setpriv, "--bounding-set=-dac_override,-dac_read_search,-fowner", "--inh-caps=-all",
                          sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"{ro / 'out.tflite'}: cannot write (Permission denied)"
    assert list(ro.iterdir()) == []


def test_require_file(tmp_path):
    with pytest.raises(UserError, match="is a folder, not a model file"):
        require_file(tmp_path)
    with pytest.raises(UserError, match="x.keras: model file not found"):
        require_file(tmp_path / "x.keras")
