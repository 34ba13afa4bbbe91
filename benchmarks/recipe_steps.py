"""The step runner of the recipes under benchmarks/: each step an `edge-deeplab` command, printed, timed and
recorded (with the load average after it) for the report, so that the recipe can be repeated by hand.

A step is skipped when its output (``done``) is there, or when its printed JSON is cached under
``scores_dir`` for the same command: a rerun of an interrupted recipe does only what is missing. With a
scores folder the steps' records persist there too (``steps.json``), so that the report of a recipe
finished over several runs lists every step.
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EDGE_DEEPLAB_SHARED", REPO.parent / "shared"))


def shared_paths(*relative) -> list[Path]:
    """Paths under ../shared, or exit saying which is absent (the recipes need the real models and data)."""
    paths = [SHARED / r for r in relative]
    for path in paths:
        if not path.exists():
            sys.exit(f"{path} is absent: this recipe needs ../shared beside the repository")
    return paths


class Recipe:
    def __init__(self, scores_dir: Path | None = None):
        self.steps = []
        self.asked = set()  # the commands of this invocation, run or skipped: current_steps() keeps their records
        self.scores = scores_dir
        if scores_dir:
            scores_dir.mkdir(parents=True, exist_ok=True)
            if (scores_dir / "steps.json").exists():
                self.steps = json.loads((scores_dir / "steps.json").read_text())

    def run(self, name, args, capture_json=False, score=None, done=None):
        """Run `edge-deeplab ARGS` unless ``done`` (a path) exists or ``score`` (a cache name under the scores
        folder) holds this command's result; returns the JSON the command printed when ``capture_json`` or
        ``score``."""
        shown = shlex.join(["edge-deeplab", *map(str, args)])
        self.asked.add(shown)
        cache = self.scores / f"{score}.json" if score and self.scores else None
        if cache and cache.exists() and json.loads(cache.read_text())["command"] == shown:
            return json.loads(cache.read_text())["result"]
        if done and Path(done).exists():
            return None
        print(f"\n$ {shown}", file=sys.stderr, flush=True)
        started = time.perf_counter()
        printed = capture_json or score
        proc = subprocess.run([sys.executable, "-m", "edge_deeplab", *map(str, args)], cwd=REPO, text=True,
                              stdout=subprocess.PIPE if printed else None)
        self.record(name, shown, time.perf_counter() - started)
        if proc.returncode:
            sys.exit(f"step {name!r} failed ({proc.returncode}): {shown}")
        if not printed:
            return None
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        if cache:
            tmp = cache.with_suffix(".tmp")
            tmp.write_text(json.dumps({"command": shown, "result": result}))
            os.replace(tmp, cache)
        return result

    def current_steps(self) -> list:
        """The records of this invocation's commands (a scores folder also keeps those of steps made for other
        settings, e.g. a model trained at another size)."""
        return [st for st in self.steps if st["command"] in self.asked]

    def record(self, name, command, seconds):
        self.steps = [s for s in self.steps if s["command"] != command]  # a step run again: its latest run
        self.steps.append({"step": name, "command": command, "seconds": round(seconds, 1),
                           "load_avg_1min_after": round(os.getloadavg()[0], 2)})
        print(f"[{name}: {seconds:.0f} s]", file=sys.stderr, flush=True)
        if self.scores:
            tmp = self.scores / "steps.tmp"
            tmp.write_text(json.dumps(self.steps, indent=1))
            os.replace(tmp, self.scores / "steps.json")
