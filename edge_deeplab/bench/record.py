"""One benchmark result: latency (and, where measured, accuracy) of one model on one target.

Plain data (JSON-able via ``to_dict``); the same record comes from host timing, from an Android
phone's ``benchmark_model`` and from the sweep, so every report treats them alike.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np


@dataclasses.dataclass
class BenchResult:
    model: str  # display name (file stem, or the sweep variant's key)
    path: str
    device: str  # 'host: <cpu>' or the phone's manufacturer and model
    delegate: str
    threads: int
    runs: int  # timed runs
    warmup: int
    median_ms: float | None = None
    p90_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    mean_ms: float | None = None
    std_ms: float | None = None
    init_ms: float | None = None  # interpreter creation + tensor allocation (delegate set-up included)
    first_ms: float | None = None  # the first invoke after init (weights packing, caches)
    peak_memory_mb: float | None = None
    size_mb: float | None = None  # the .tflite file
    input: str = ""  # e.g. '257x257 float32'
    soc: str = ""
    runner: str = ""  # 'ai-edge-litert X.Y' or 'benchmark_model (adb)'
    baseline: bool = False  # an official model measured beside the variants
    variant: dict | None = None  # sweep variant fields (os, decoder, quant, size)
    miou: float | None = None
    iou: dict | None = None  # per class, e.g. {'background': .., 'person': ..}
    eval_images: int | None = None
    note: str = ""

    @property
    def latency_ms(self) -> float | None:
        """The figure reports rank by: the median, or the mean where the runner gives no median."""
        return self.median_ms if self.median_ms is not None else self.mean_ms

    def to_dict(self) -> dict:
        return {k: _clean(v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "BenchResult":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def latency_summary(times_ms) -> dict:
    """median, p90, min, max, mean and (population) std of a list of run times in ms."""
    t = np.asarray(times_ms, dtype=np.float64)
    if t.size == 0:
        raise ValueError("no run times to summarize")
    return {"median_ms": float(np.median(t)), "p90_ms": float(np.percentile(t, 90)), "min_ms": float(t.min()),
            "max_ms": float(t.max()), "mean_ms": float(t.mean()), "std_ms": float(t.std())}


def _clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    return v
