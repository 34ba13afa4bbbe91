"""Training throughput: one process against a cluster of two local workers (`--strategy multi-worker`).

    python benchmarks/multiworker_speed.py --rounds 2 --output benchmarks/multiworker_speed.md

Every configuration trains the same model on the same generated data with the same global batch through
`edge-deeplab train` (real processes; the workers talk gRPC over 127.0.0.1); the rounds interleave the
configurations. Throughput is taken from the chief's history.json: steps per second over the epochs after
the first (which traces the step function), median over epochs and rounds; start-up (TensorFlow import,
the cluster forming) is reported apart. The configurations:
  - one process, TensorFlow's default threads (both cores);
  - two workers, default threads each (4 compute threads on 2 cores);
  - two workers, one intra-op thread each ($TF_NUM_INTRAOP_THREADS=1).
What this can show on one 2-core machine: what synchronous data parallelism costs (one all-reduce of every
gradient per step, batch-split overhead) against what it buys. What it cannot show: speed-up from more
hardware -- both workers share the same two cores, so two workers can at best match one process here;
on two machines each worker has its own cores and the all-reduce crosses a real network.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {"1 process": (1, None), "2 workers": (2, None), "2 workers, 1 thread each": (2, 1)}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--epochs", type=int, default=4, help="The first is excluded (tracing).")
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=8, help="The global batch.")
    p.add_argument("--crop", type=int, default=129)
    p.add_argument("--depth", type=float, default=0.5)
    p.add_argument("--output", type=Path, default=REPO / "benchmarks" / "multiworker_speed.md")
    return p.parse_args()


def make_data(root: Path, n: int, size: int):
    """Squares on noise, as in the tests: the content does not change the speed."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        image = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
        label = np.zeros((size, size), np.uint8)
        y, x, s = rng.integers(0, size // 2, 3)
        image[y:y + s + 8, x:x + s + 8] = 220
        label[y:y + s + 8, x:x + s + 8] = 1
        cv2.imwrite(str(root / "images" / f"{i}.png"), image)
        cv2.imwrite(str(root / "masks" / f"{i}.png"), label)


def train_command(a, work: Path, run_dir: Path):
    return [sys.executable, "-m", "edge_deeplab", "train", "--init", str(work / "init.keras"), "--data",
            str(work / "data"), "--format", "folder", "--data-classes", "2", "--epochs", str(a.epochs),
            "--batch-size", str(a.batch_size), "--crop-size", str(a.crop), "--optimizer", "adam", "--lr", "1e-3",
            "--freeze-bn", "--cache", "--no-progress", "--run-dir", str(run_dir)]


def run_config(a, work: Path, name: str, round_: int) -> dict:
    workers, threads = CONFIGS[name]
    run_dir = work / f"run_{round_}_{name.replace(' ', '_').replace(',', '')}"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("TF_CONFIG", None)
    if threads:
        env["TF_NUM_INTRAOP_THREADS"] = str(threads)
    command = train_command(a, work, run_dir)
    started = time.perf_counter()
    if workers == 1:
        procs = [subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)]
    else:
        from edge_deeplab.train.distribute import free_local_ports  # imports TensorFlow: only for clusters

        cluster = ",".join(f"127.0.0.1:{p}" for p in free_local_ports(workers))
        procs = [subprocess.Popen([*command, "--worker", cluster, "--task-index", str(i)], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for i in range(workers)]
    try:
        errors = [p.communicate(timeout=1800)[1] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    wall = time.perf_counter() - started
    if any(p.returncode for p in procs):
        sys.exit(f"{name}: a process failed:\n" + "\n".join(e[-2000:] for e in errors))
    history = json.loads((run_dir / "history.json").read_text())
    steps = history[0]["steps"]  # steps per epoch
    later = [h["seconds"] for h in history[1:]]
    return {"config": name, "round": round_, "steps_per_epoch": steps, "epoch_seconds": later,
            "steps_per_s": [steps / s for s in later], "wall_s": round(wall, 1),
            "start_up_s": round(wall - sum(h["seconds"] for h in history), 1)}


def main():
    a = parse_args()
    sys.path.insert(0, str(REPO))
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        make_data(work / "data", a.samples, a.crop)
        subprocess.run([sys.executable, "-m", "edge_deeplab", "build", "-d", str(a.depth), "--input-size",
                        str(a.crop), "--num-classes", "2", "-o", str(work / "init.keras")], check=True,
                       env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), stdout=subprocess.DEVNULL)
        runs = []
        for round_ in range(a.rounds):
            for name in CONFIGS:
                runs.append(run_config(a, work, name, round_))
                print(f"round {round_ + 1}: {name}: {statistics.median(runs[-1]['steps_per_s']):.2f} steps/s",
                      file=sys.stderr, flush=True)
    report = {"settings": {k: str(v) for k, v in vars(a).items()},
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "load_avg_before": [round(x, 2) for x in load_before],
                          "load_avg_after": [round(x, 2) for x in os.getloadavg()]},
              "runs": runs}
    a.output.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    a.output.write_text(markdown(report, a))
    print(a.output.read_text())


def markdown(report, a) -> str:
    by_config = {name: [r for r in report["runs"] if r["config"] == name] for name in CONFIGS}
    base = statistics.median(s for r in by_config["1 process"] for s in r["steps_per_s"])
    lines = [
        "# Training throughput: one process vs two local workers",
        "",
        f"Made by `{shlex.join(['python', 'benchmarks/multiworker_speed.py', *sys.argv[1:]])}` "
        f"(MobileNetV2 depth {a.depth} DeepLab, {a.crop}x{a.crop} crops, global batch {a.batch_size}, "
        f"{a.samples} generated images, {a.epochs} epochs of which the first is not counted; configurations "
        "interleaved). "
        f"Machine: {report['machine']['cpus']} CPUs, {report['machine']['platform']}; load average before "
        f"{report['machine']['load_avg_before'][0]}, after {report['machine']['load_avg_after'][0]}.",
        "",
        "| configuration | steps/s (median) | images/s | x one process | fastest epoch, steps/s | x one process "
        "| start-up s (median) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    best_base = max(s for r in by_config["1 process"] for s in r["steps_per_s"])
    for name, runs in by_config.items():
        rates = [s for r in runs for s in r["steps_per_s"]]
        rate, best = statistics.median(rates), max(rates)
        lines.append(f"| {name} | {rate:.2f} | {rate * a.batch_size:.1f} | {rate / base:.2f} | {best:.2f} | "
                     f"{best / best_base:.2f} | {statistics.median(r['start_up_s'] for r in runs):.1f} |")
    lines += ["", "Every epoch's rate is in the .json beside this file. This machine's CPU time comes in two speeds "
              "(the same configuration's epochs cluster near two rates about 2x apart, as a CPU quota would make "
              "them), so the median depends on which speed each run met; the fastest epoch of each configuration "
              "compares them at the machine's full speed."]
    lines += ["", "Start-up: wall time minus the epochs (TensorFlow import, model load, the cluster forming, "
              "the input cache).", "",
              "What it shows: on one machine the two workers share the same two cores, so the cluster can at "
              "best match one process; the gap is the price of synchronous data parallelism here (a gRPC "
              "all-reduce of every gradient each step, half-size batches per worker) and, with default threads, "
              "four compute threads competing for two cores. What it cannot show: the "
              "speed-up of two machines, where each worker brings its own cores and the all-reduce crosses a "
              "real network.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
