"""1,000 seeded mutants of the official models through `edge-deeplab predict`, `eval` and `bench`.

    python benchmarks/fuzz_models.py          # writes benchmarks/fuzz_models.md (its run time inside)

Half the mutants come from deeplabv3_257_mv_gpu_metadata.tflite (float, logits, metadata), half from
deeplabv3_mnv2_dm05_pascal_quant.tflite (uint8, ARG_MAX labels). Each mutant (truncated, bits flipped,
header overwritten or a chunk copied: tests/fuzzing.py) runs through each verb in a child forked from this
process, the verb called as the command line calls it; the child's ending is counted: ok (the damage hit
nothing that matters), error (one `error:` line, exit status 2), traceback, signal (a native crash) or hang
(over 60 s). The test suite runs a few hundred mutants through the runtime (tests/test_fuzz_models.py).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EDGE_DEEPLAB_SHARED", REPO.parent / "shared"))
sys.path.insert(0, str(REPO / "tests"))

from fuzzing import VERDICTS, fuzz  # noqa: E402

MODELS = ("deeplabv3_257_mv_gpu_metadata.tflite", "deeplabv3_mnv2_dm05_pascal_quant.tflite")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=1000, help="Mutants in all (half of each model).")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work-dir", type=Path, default=REPO / "runs" / "fuzz_models")
    p.add_argument("--report", type=Path, default=REPO / "benchmarks" / "fuzz_models.md")
    a = p.parse_args()
    from edge_deeplab.cli import main as cli

    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    photos = SHARED / "data" / "pennfudan" / "PennFudanPed"
    image = photos / "PNGImages" / "FudanPed00001.png"
    out = a.work_dir / "out"
    verbs = {
        "predict": lambda m: cli(["predict", "-m", str(m), str(image), "-o", str(out), "--threads", "1"]),
        "eval": lambda m: cli(["eval", str(m), "--data", str(photos), "--format", "pennfudan", "--subset", "0:2",
                               "--class-map", "15:1", "--default-class", "0", "--threads", "1", "--no-progress"]),
        "bench": lambda m: cli(["bench", str(m), "--runs", "2", "--warmup", "0", "--threads", "1", "--no-memory"]),
    }
    rows, started = [], time.perf_counter()
    for k, name in enumerate(MODELS):
        for verb, job in verbs.items():
            result = fuzz(SHARED / "models" / "official" / name, a.count // len(MODELS), a.seed + k,
                          lambda m: _quiet(job, m), a.work_dir / "mutants", limit_s=60)
            rows.append((name, verb, result))
            print(f"{name} {verb}: {dict(result['verdicts'])}", file=sys.stderr, flush=True)
    minutes = (time.perf_counter() - started) / 60
    lines = ["# Mutated official models through predict, eval and bench", "",
             f"Made by `python benchmarks/fuzz_models.py --count {a.count} --seed {a.seed}` in {minutes:.1f} min "
             "(each mutant through each verb in a forked child; see the script's docstring).", "",
             "| model | verb | " + " | ".join(VERDICTS) + " |",
             "| --- | --- | " + " | ".join("---:" for _ in VERDICTS) + " |"]
    total = Counter()
    for name, verb, result in rows:
        total.update(result["verdicts"])
        lines.append(f"| {name} | {verb} | " + " | ".join(str(result["verdicts"][v]) for v in VERDICTS) + " |")
    lines.append("| all | all | " + " | ".join(str(total[v]) for v in VERDICTS) + " |")
    bad = [(name, verb, f) for name, verb, r in rows for f in r["failures"]]
    lines += ["", "By kind of mutation (all verbs): " + "; ".join(
        f"{kind} {dict(sum((r['by_kind'][kind] for _, _, r in rows), Counter()))}" for kind in rows[0][2]["by_kind"]),
        "", "Failures (mutant index, kind, verdict): " + (", ".join(f"{n} {v} {f}" for n, v, f in bad) or "none"), ""]
    a.report.write_text("\n".join(lines))
    print("\n".join(lines))


def _quiet(job, model):
    """The child's stderr (progress bars, the error lines) goes to /dev/null: only its ending counts."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    job(model)


if __name__ == "__main__":
    main()
