"""Reports of `edge-deeplab bench`: Pareto front, reference ratios, CSV / JSON / Markdown / PNG files."""
import csv
import json

import pytest

from edge_deeplab.bench import report
from edge_deeplab.bench.record import BenchResult, latency_summary
from edge_deeplab.errors import UserError


def result(model, ms, miou=None, threads=2, baseline=False, **kw):
    iou = None if miou is None else {"background": 0.9, "person": 2 * miou - 0.9}
    return BenchResult(model=model, path=f"/m/{model}.tflite", device="host: cpu", delegate="xnnpack",
                       threads=threads, runs=5, warmup=1, median_ms=ms, miou=miou, iou=iou, baseline=baseline, **kw)


def test_latency_summary():
    s = latency_summary([4.0, 1.0, 3.0, 2.0, 10.0])
    assert s["median_ms"] == 3.0 and s["min_ms"] == 1.0 and s["max_ms"] == 10.0 and s["mean_ms"] == 4.0
    assert s["p90_ms"] == pytest.approx(7.6) and s["std_ms"] == pytest.approx(3.1623, abs=1e-4)


def test_pareto_front_per_thread_count():
    fast, best, dominated, slow_worse, other = (result("fast", 10, 0.70), result("best", 20, 0.80),
                                               result("dominated", 15, 0.60), result("slow", 30, 0.75),
                                               result("fast", 5, 0.70, threads=4))
    no_miou = result("nodata", 1)
    front = report.pareto_front([fast, best, dominated, slow_worse, other, no_miou])
    assert front == [fast, best, other]


def test_ratios_are_to_the_first_baseline_of_the_same_group():
    ours, official, other_threads = result("ours", 10), result("official", 40, baseline=True), result("x", 8, threads=1)
    assert report.reference_ratios([ours, official, other_threads]) == [0.25, 1.0, 1.0]


def test_mean_stands_in_for_a_missing_median():
    r = result("phone", None, mean_ms=12.5)
    assert r.latency_ms == 12.5 and report.reference_ratios([r]) == [1.0]


def test_report_files(tmp_path):
    results = [result("official", 40, 0.85, baseline=True), result("os16_nodec_int8_257", 10, 0.80,
                                                                   variant={"os": 16, "decoder": 0, "quant": "int8",
                                                                            "size": 257}),
               result("os8_dec_fp32_257", 30, None, note="untrained decoder: latency only",
                      variant={"os": 8, "decoder": 1, "quant": "fp32", "size": 257})]
    meta = {"command": "edge-deeplab bench --sweep spec.json", "machine": "cpu"}
    report.plot_pareto(results, tmp_path / "s.png")
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
    report.write_json(results, tmp_path / "s.json", meta)
    report.write_csv(results, tmp_path / "s.csv")
    report.write_markdown(results, tmp_path / "s.md", title="Study", meta=meta, plot=tmp_path / "s.png")

    back_meta, back = report.read_json(tmp_path / "s.json")
    assert back_meta == meta and [r.to_dict() for r in back] == [r.to_dict() for r in results]
    rows = list(csv.DictReader((tmp_path / "s.csv").open()))
    assert [r["model"] for r in rows] == ["official", "os16_nodec_int8_257", "os8_dec_fp32_257"]
    assert rows[1]["quant"] == "int8" and float(rows[1]["x_ref"]) == 0.25 and rows[1]["pareto"] == "True"
    assert float(rows[0]["iou_person"]) == pytest.approx(0.8) and rows[2]["miou"] == ""
    md = (tmp_path / "s.md").read_text()
    assert md.startswith("# Study") and "edge-deeplab bench --sweep spec.json" in md
    assert "![latency vs mIOU](s.png)" in md
    assert "| official (official) |" in md and "untrained decoder: latency only" in md
    table = report.format_table(results)
    assert table.splitlines()[0].split()[:4] == ["model", "OS", "decoder", "quant"] and "0.25" in table


def test_plot_needs_miou(tmp_path):
    with pytest.raises(UserError, match="needs mIOU"):
        report.plot_pareto([result("a", 10)], tmp_path / "p.png")
    assert not (tmp_path / "p.png").exists()


def test_unreadable_results_file(tmp_path):
    (tmp_path / "x.json").write_text(json.dumps({"nothing": 1}))
    with pytest.raises(UserError, match="not a benchmark results file"):
        report.read_json(tmp_path / "x.json")
