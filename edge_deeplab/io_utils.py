"""Atomic writes: an output is either the old file or the complete new one, never half written.

A write goes to a temporary file beside the output, named ``.<name>.partial-<pid>-<random><suffix>``, and is
renamed onto the output when complete. A process killed with SIGKILL cannot remove its temporary file;
the next write of the same output recognises leftovers by that name and removes those whose process is
gone. Where an output cannot be written (a read-only folder, a parent path that is a file), the error
is a UserError naming the path; ``check_writable`` finds that out before long work starts.

``crash_point(name)`` kills the process with SIGKILL when $EDGE_DEEPLAB_CRASH_AT names that point (or sends
it SIGTERM for ``name=TERM``): the tests use it to interrupt a real process at exactly the dangerous step.
"""
import contextlib
import json
import os
import re
import signal
import tempfile
from pathlib import Path

from edge_deeplab.errors import UserError

CRASH_ENV = "EDGE_DEEPLAB_CRASH_AT"
_CRASH_COUNTS: dict = {}  # crash point name -> times reached
_PARTIAL = ".partial-"


def crash_point(name: str):
    """Die here, as kill -9 would, when $EDGE_DEEPLAB_CRASH_AT is ``name`` (or ``name@K``: the K-th time
    this point is reached); receive SIGTERM here when it is ``name=TERM`` (tests of interruptions)."""
    wanted = os.environ.get(CRASH_ENV)
    if not wanted or not wanted.startswith(name):
        return
    _CRASH_COUNTS[name] = _CRASH_COUNTS.get(name, 0) + 1
    if wanted in (name, f"{name}@{_CRASH_COUNTS[name]}"):
        os.kill(os.getpid(), signal.SIGKILL)
    elif wanted == f"{name}=TERM":
        os.kill(os.getpid(), signal.SIGTERM)


def _cannot_write(path, error: OSError) -> UserError:
    reason = error.strerror or type(error).__name__
    if isinstance(error, (FileExistsError, NotADirectoryError)):
        reason = "a parent path is a file, not a folder"
    return UserError(f"{path}: cannot write ({reason})")


def make_dirs(folder) -> Path:
    """Create ``folder`` (and its parents); a UserError naming it when that is impossible."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _cannot_write(folder, e) from None
    return folder


def check_writable(path, folder=False) -> Path:
    """Raise a UserError now, before any work, if ``path`` (a file, or with ``folder`` a folder to write
    files into) cannot be written: creates the folder and a probe file in it, and removes the probe."""
    path = Path(path)
    target = path if folder else path.parent
    if not folder and path.is_dir():
        raise UserError(f"{path}: is a folder; expected a file path to write")
    make_dirs(target)
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}{_PARTIAL}{os.getpid()}-", dir=target)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise _cannot_write(path, e) from None
    return path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_leftovers(path) -> list:
    """Remove the temporary files that killed processes left beside ``path``; returns what was removed."""
    path = Path(path)
    pattern = re.compile(re.escape(f".{path.name}{_PARTIAL}") + r"(\d+)-")
    removed = []
    with contextlib.suppress(OSError):
        for entry in path.parent.iterdir():
            found = pattern.match(entry.name)
            if found and int(found.group(1)) != os.getpid() and not _pid_alive(int(found.group(1))):
                with contextlib.suppress(OSError):
                    entry.unlink()
                    removed.append(entry)
    return removed


@contextlib.contextmanager
def atomic_path(path, suffix=None):
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    The temporary name keeps the suffix of ``path`` (or ``suffix``) so that writers which pick a
    format from the extension (Keras, OpenCV) still do the right thing.
    """
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a folder; expected a file path to write")
    make_dirs(path.parent)
    remove_leftovers(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{_PARTIAL}{os.getpid()}-", suffix=suffix or path.suffix,
                                   dir=path.parent)
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a finished output gets the usual permissions
    except OSError as e:
        raise _cannot_write(path, e) from None
    try:
        yield Path(tmp)
        crash_point(f"write:{path.name}")
        try:
            os.replace(tmp, path)
        except OSError as e:
            raise _cannot_write(path, e) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_bytes_atomic(path, data: bytes):
    with atomic_path(path) as tmp:
        _write(tmp, path, lambda: tmp.write_bytes(data))


def write_text_atomic(path, text: str):
    with atomic_path(path) as tmp:
        _write(tmp, path, lambda: tmp.write_text(text))


def _write(tmp, path, write):
    try:
        write()
    except OSError as e:  # a full disk, say
        raise _cannot_write(path, e) from None


def write_json_atomic(path, obj):
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def require_file(path, what="model file") -> Path:
    """``path`` as a Path if it is a file; else a UserError that says whether it is missing or a folder."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a folder, not a {what}")
    if not path.is_file():
        raise UserError(f"{path}: {what} not found")
    return path
