"""Reports of benchmark results: a terminal table, CSV, JSON, Markdown and a latency-vs-mIOU plot.

Latency is the median of the timed runs (the mean where a runner gives no median). ``x ref`` is a
model's latency over the reference's (the first baseline, else the first model) measured on the
same device, delegate and thread count: ratios of interleaved runs survive a noisy machine better
than absolute times. The Pareto front holds the models that no other model beats on both latency
and mIOU. matplotlib is imported only to draw the plot.
"""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from edge_deeplab.bench.record import BenchResult
from edge_deeplab.errors import DataError, OptionError
from edge_deeplab.io_utils import atomic_path, write_json_atomic, write_text_atomic

VARIANT_FIELDS = ("os", "decoder", "quant", "size")


def _group(r: BenchResult):
    return r.device, r.delegate, r.threads


def reference_ratios(results) -> list:
    """latency / the reference's latency in the same (device, delegate, threads) group, or None."""
    refs = {}
    for r in sorted(results, key=lambda r: not r.baseline):  # baselines first, then in order
        if r.latency_ms:
            refs.setdefault(_group(r), r)
    ratios = []
    for r in results:
        ref = refs.get(_group(r))
        ratios.append(r.latency_ms / ref.latency_ms if ref and r.latency_ms is not None else None)
    return ratios


def pareto_front(results) -> list:
    """Results that no other result of their (device, delegate, threads) group beats on both latency
    (lower) and mIOU (higher), each group sorted by latency."""
    front = []
    groups = {}
    for r in results:
        if r.miou is not None and r.latency_ms is not None and math.isfinite(r.miou):
            groups.setdefault(_group(r), []).append(r)
    for members in groups.values():
        best = -math.inf
        for r in sorted(members, key=lambda r: (r.latency_ms, -r.miou)):
            if r.miou > best:
                front.append(r)
                best = r.miou
    return front


def class_names(results) -> list:
    names = []
    for r in results:
        for name in (r.iou or {}):
            if name not in names:
                names.append(name)
    return names


def rows(results) -> list[dict]:
    """One flat dict per result: the columns of the CSV and the tables (numbers unrounded)."""
    ratios, front = reference_ratios(results), {id(r) for r in pareto_front(results)}
    names = class_names(results)
    table = []
    for r, ratio in zip(results, ratios):
        variant = r.variant or {}
        row = {"model": r.model, "baseline": r.baseline, "device": r.device, "soc": r.soc, "delegate": r.delegate,
               "threads": r.threads, "input": r.input}
        row.update({f: variant.get(f) for f in VARIANT_FIELDS})
        row.update({"size_mb": r.size_mb, "median_ms": r.median_ms, "p90_ms": r.p90_ms, "min_ms": r.min_ms,
                    "mean_ms": r.mean_ms, "std_ms": r.std_ms, "x_ref": ratio, "init_ms": r.init_ms,
                    "first_ms": r.first_ms, "peak_memory_mb": r.peak_memory_mb, "miou": r.miou})
        row.update({f"iou_{n}": (r.iou or {}).get(n) for n in names})
        row.update({"eval_images": r.eval_images, "pareto": id(r) in front if r.miou is not None else None,
                    "runs": r.runs, "warmup": r.warmup, "runner": r.runner, "note": r.note, "path": r.path})
        table.append(row)
    return table


# ---------------------------------------------------------------------------------------------- text
def _fmt(value, digits=2):
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _display_columns(results):
    """(header, key, digits) of the columns worth showing for these results."""
    cols = [("model", "model", 0)]
    if any(r.variant for r in results):
        cols += [("OS", "os", 0), ("decoder", "decoder", 0), ("quant", "quant", 0)]
    cols += [("input", "input", 0), ("threads", "threads", 0)]
    if len({r.delegate for r in results}) > 1:
        cols.append(("delegate", "delegate", 0))
    if len({r.device for r in results}) > 1:
        cols.append(("device", "device", 0))
    cols += [("median ms", "median_ms", 2), ("p90 ms", "p90_ms", 2), ("min ms", "min_ms", 2),
             ("std ms", "std_ms", 2), ("x ref", "x_ref", 2), ("init ms", "init_ms", 1),
             ("peak MB", "peak_memory_mb", 1), ("size MB", "size_mb", 2)]
    if any(r.miou is not None for r in results):
        cols.append(("mIOU", "miou", 4))
        cols += [(f"IoU {n}", f"iou_{n}", 4) for n in class_names(results)]
        cols.append(("Pareto", "pareto", 0))
    if any(r.note for r in results):
        cols.append(("note", "note", 0))
    return cols


def _cells(results):
    cols = _display_columns(results)
    body = []
    for row in rows(results):
        cells = [_fmt(row.get(key), digits) for _, key, digits in cols]
        if row["baseline"]:
            cells[0] += " (official)"
        body.append(cells)
    return [c[0] for c in cols], body


def format_table(results) -> str:
    """An aligned plain-text table for the terminal."""
    header, body = _cells(results)
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(header)]
    line = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(b) for b in body])


def markdown_table(results) -> str:
    header, body = _cells(results)
    align = ["---"] + ["---:"] * (len(header) - 1)
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in b) + " |" for b in body]
    return "\n".join(out)


# --------------------------------------------------------------------------------------------- files
def write_csv(results, path):
    table = rows(results)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(table[0]) if table else ["model"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(table)
    write_text_atomic(path, buffer.getvalue())


def write_json(results, path, meta=None):
    write_json_atomic(path, {"meta": meta or {}, "results": [r.to_dict() for r in results]})


def read_json(path) -> tuple[dict, list]:
    import json

    try:
        data = json.loads(Path(path).read_text())
        return data.get("meta", {}), [BenchResult.from_dict(d) for d in data["results"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path}: not a benchmark results file ({e})") from None


def write_markdown(results, path, title="Benchmark", meta=None, plot=None):
    meta = meta or {}
    parts = [f"# {title}", ""]
    if meta.get("command"):
        parts += ["Reproduce (from the repository root):", "", "```", meta["command"], "```", ""]
    facts = [f"- {k.replace('_', ' ')}: {v}" for k, v in meta.items() if k != "command" and v not in (None, "")]
    parts += facts + ([""] if facts else [])
    parts += [markdown_table(results), ""]
    parts += ["Latency: median of the timed runs (interleaved across models on the host); "
              "`x ref`: latency over the reference's (the first official model, else the first row) "
              "on the same device, delegate and threads.", ""]
    front = pareto_front(results)
    if front:
        parts += ["Pareto front (no other model is both faster and more accurate):", ""]
        parts += [f"- {r.model}{' (official)' if r.baseline else ''}: {r.latency_ms:.2f} ms, mIOU {r.miou:.4f}"
                  f" ({r.threads} threads, {r.delegate})" for r in front] + [""]
    if plot:
        parts += [f"![latency vs mIOU]({Path(plot).name})", ""]
    write_text_atomic(path, "\n".join(parts))


# How the plot tells variants apart: colour = quantization, marker = decoder, size = output stride.
QUANT_COLOURS = {"fp32": "#1f77b4", "fp16": "#2ca02c", "dynamic": "#9467bd", "int8": "#ff7f0e", "int8_qat": "#d62728"}
QUANT_NAMES = {"fp32": "float32", "fp16": "float16", "dynamic": "int8 weights (dynamic)", "int8": "int8 (post-training)",
               "int8_qat": "int8 (QAT)"}
DECODER_MARKERS = {0: "o", 1: "^"}
OS_SIZES = {8: 130, 16: 60, 32: 22}


def plot_pareto(results, path, title="Latency vs mIOU", ylabel="mIOU"):
    """A PNG of ``ylabel`` against latency with the Pareto front, one panel per (device, delegate, threads).

    Sweep variants are told apart by colour (quantization), marker (decoder off / on) and size (output
    stride), explained in the legend; official models are stars and other models diamonds, both named."""
    points = [r for r in results if r.miou is not None and r.latency_ms is not None]
    if not points:
        raise OptionError("the latency-vs-mIOU plot needs mIOU: pass --data (and --format) to measure it")
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")  # files only; no display needed
    import matplotlib.pyplot as plt

    groups = {}
    for r in points:
        groups.setdefault(_group(r), []).append(r)
    width = 7.5 * len(groups) + 2.2  # the panels, and a column for the legend
    fig, axes = plt.subplots(1, len(groups), figsize=(width, 6.5), dpi=120, sharey=True, squeeze=False)
    front = {id(r) for r in pareto_front(points)}
    for ax, ((device, delegate, threads), members) in zip(axes[0], groups.items()):
        _plot_group(ax, members, front)
        ax.set_title(f"{threads} thread{'s' if threads > 1 else ''}, {delegate}"
                     + (f", {device}" if len({g[0] for g in groups}) > 1 else ""), fontsize=9)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.xaxis.set_minor_formatter(matplotlib.ticker.ScalarFormatter())
        ax.tick_params(axis="x", which="minor", labelsize=7)
        ax.set_xlabel("latency, median ms (log scale)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel(ylabel)
    fig.suptitle(title)
    right = 1 - 2.2 / width
    fig.tight_layout(rect=(0, 0, right, 1))
    fig.legend(handles=_legend_handles(points), fontsize=8, loc="center left", bbox_to_anchor=(right, 0.5),
               frameon=False)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def _plot_group(ax, members, front):
    line = sorted((r for r in members if id(r) in front), key=lambda r: r.latency_ms)
    ax.plot([r.latency_ms for r in line], [r.miou for r in line], linestyle="--", color="black", alpha=0.5,
            zorder=2)
    named = []
    for r in members:
        edge = "black" if id(r) in front else "none"
        if r.variant:
            v = r.variant
            ax.scatter(r.latency_ms, r.miou, color=QUANT_COLOURS.get(v.get("quant"), "grey"),
                       marker=DECODER_MARKERS.get(int(v.get("decoder", 0)), "s"), s=OS_SIZES.get(v.get("os"), 60),
                       edgecolor=edge, linewidth=1.2, zorder=3)
        else:
            ax.scatter(r.latency_ms, r.miou, marker="*" if r.baseline else "D", s=200 if r.baseline else 70,
                       color="gold" if r.baseline else "lightgrey", edgecolor="black", zorder=4)
            named.append(r)
    # names of the few models that are not variants, stacked so that they never overlap
    for k, r in enumerate(sorted(named, key=lambda r: r.miou)):
        ax.annotate(r.model, (r.latency_ms, r.miou), xytext=(-10, 12) if k % 2 else (10, -16),
                    textcoords="offset points", ha="right" if k % 2 else "left", fontsize=7,
                    arrowprops={"arrowstyle": "-", "color": "grey", "lw": 0.5})


def _legend_handles(points):
    from matplotlib.lines import Line2D

    def dot(label, **style):
        return Line2D([], [], linestyle="none", label=label, **style)

    variants = [r.variant for r in points if r.variant]
    quants = [q for q in QUANT_COLOURS if any(v.get("quant") == q for v in variants)]
    decoders = sorted({int(v.get("decoder", 0)) for v in variants})
    strides = sorted({v.get("os") for v in variants if v.get("os") in OS_SIZES})
    handles = [dot(QUANT_NAMES[q], marker="s", color=QUANT_COLOURS[q], markersize=8) for q in quants]
    handles += [dot("decoder " + ("on" if d else "off"), marker=DECODER_MARKERS[d], color="grey", markersize=8)
                for d in decoders]
    handles += [dot(f"output stride {o}", marker="o", color="grey", markersize=OS_SIZES[o] ** 0.5) for o in strides]
    if any(r.baseline for r in points):
        handles.append(dot("official model", marker="*", color="gold", markeredgecolor="black", markersize=13))
    if any(not r.baseline and not r.variant for r in points):
        handles.append(dot("other model", marker="D", color="lightgrey", markeredgecolor="black", markersize=7))
    handles.append(Line2D([], [], linestyle="--", color="black", alpha=0.5, label="Pareto front (black edge)"))
    return handles
