"""Mutated model files run in forked children: the harness of tests/test_fuzz_models.py and of
benchmarks/fuzz_models.py.

A mutant is one of: the file truncated, a few bits flipped, header bytes overwritten, or a chunk of the
file copied over another place. Each mutant runs in a child forked from this process (the runtime is
imported once, in the parent); the child's way of ending is its verdict:
  ok         the job succeeded (the mutation hit nothing that matters)
  error      one clear line: a UserError, exit status 2
  traceback  any other Python exception (a bug)
  signal     the child died of a signal (a native crash)
  hang       still running after the time limit (killed)
"""
from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

import numpy as np

KINDS = ("truncate", "bit_flips", "header", "copy_chunk")
VERDICTS = ("ok", "error", "traceback", "signal", "hang")


def mutate(data: bytes, rng: np.random.Generator) -> tuple[str, bytes]:
    """One random mutation of ``data``: (its kind, the mutated bytes)."""
    kind = KINDS[int(rng.integers(len(KINDS)))]
    b = bytearray(data)
    n = len(b)
    if kind == "truncate":
        return kind, bytes(b[:int(rng.integers(0, n))])
    if kind == "bit_flips":
        for pos in rng.integers(0, n, int(rng.integers(1, 9))):
            b[pos] ^= 1 << int(rng.integers(8))
    elif kind == "header":
        start = int(rng.integers(0, 32))
        b[start:start + 16] = rng.integers(0, 256, 16, dtype=np.uint8).tobytes()
    else:
        size = int(rng.integers(4, 4096))
        src, dst = (int(x) for x in rng.integers(0, max(1, n - size), 2))
        b[dst:dst + size] = b[src:src + size]
    return kind, bytes(b[:n])


def run_in_child(job, limit_s: float = 30.0) -> str:
    """Run ``job()`` in a forked child and return its verdict (see the module docstring)."""
    from edge_deeplab.errors import UserError

    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 0
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)  # the runtime's own C++ lines
            job()
        except UserError:
            code = 2
        except SystemExit as e:  # the CLI: 2 after its one-line error, 0 (or None) when done
            code = {None: 0, 0: 0, 2: 2}.get(e.code, 1)
        except BaseException:  # noqa: BLE001 - any other exception is the bug this looks for
            traceback.print_exc()
            code = 1
        os._exit(code)
    deadline = time.monotonic() + limit_s
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return "hang"
        time.sleep(0.005)
    if os.WIFSIGNALED(status):
        return "signal"
    return {0: "ok", 2: "error"}.get(os.WEXITSTATUS(status), "traceback")


def fuzz(model: Path, count: int, seed: int, job, work_dir: Path, limit_s: float = 30.0) -> dict:
    """``count`` seeded mutants of ``model``, each written to ``work_dir`` and given to ``job(path)`` in a
    child. Returns {"verdicts": Counter, "by_kind": {kind: Counter}, "failures": [(seed, kind, verdict)]}."""
    data = Path(model).read_bytes()
    work_dir.mkdir(parents=True, exist_ok=True)
    verdicts, by_kind, failures = Counter(), {k: Counter() for k in KINDS}, []
    for i in range(count):
        kind, mutant = mutate(data, np.random.default_rng([seed, i]))
        path = work_dir / f"mutant{i % 4}.tflite"
        path.write_bytes(mutant)
        verdict = run_in_child(lambda: job(path), limit_s)
        verdicts[verdict] += 1
        by_kind[kind][verdict] += 1
        if verdict not in ("ok", "error"):
            failures.append((i, kind, verdict))
    return {"verdicts": verdicts, "by_kind": by_kind, "failures": failures}
