"""Host timing of `edge-deeplab bench`: real LiteRT runs (tiny counts), interleaving, no TensorFlow."""
import json

import cv2
import numpy as np
import pytest

import tiny_tflite
from test_no_tensorflow import run_without_tensorflow
from edge_deeplab.bench import host
from edge_deeplab.cli import main
from edge_deeplab.errors import UserError


def test_host_timing_of_the_official_257_model(shared):
    path = shared("models", "official", "deeplabv3_257_mv_gpu.tflite")
    (r,) = host.bench_host([path], threads=(1,), runs=3, warmup=1, progress=False)
    assert r.runs == 3 and r.warmup == 1 and r.threads == 1 and r.delegate == "xnnpack"
    assert 0 < r.min_ms <= r.median_ms <= r.p90_ms <= r.max_ms
    assert r.std_ms >= 0 and r.min_ms <= r.mean_ms <= r.max_ms
    assert r.input == "257x257 float32" and r.size_mb == pytest.approx(path.stat().st_size / 1e6)
    assert r.init_ms > 0 and r.first_ms > 0
    assert r.peak_memory_mb > 1  # 2.8 MB of weights, activations at 257x257
    assert r.device.startswith("host: ") and r.runner.startswith("ai-edge-litert")


class Recorder:
    """An interpreter that notes the order of its invokes."""

    def __init__(self, interpreter, name, log):
        self._interpreter, self._name, self._log = interpreter, name, log

    def invoke(self):
        self._log.append(self._name)
        self._interpreter.invoke()

    def __getattr__(self, attr):
        return getattr(self._interpreter, attr)


def test_models_are_interleaved_run_by_run(tmp_path, monkeypatch):
    paths = []
    for name, content in (("a", tiny_tflite.tanh_logits(8, 8)), ("b", tiny_tflite.pooled_logits(8, 8)),
                          ("c", tiny_tflite.argmax_labels(8, 8))):
        paths.append(tmp_path / f"{name}.tflite")
        paths[-1].write_bytes(content)
    log = []
    real = host.make_interpreter
    monkeypatch.setattr(host, "make_interpreter",
                        lambda content, n, delegate, source: Recorder(real(content, n, delegate, source=source),
                                                                      source.stem, log))
    results = host.bench_host(paths, threads=(1, 2), runs=4, warmup=2, progress=False, memory=False)

    assert [(r.model, r.threads) for r in results] == [(m, n) for n in (1, 2) for m in "abc"]
    assert all(r.runs == 4 and r.init_ms > 0 and r.peak_memory_mb is None for r in results)
    rounds = ["abc", "abc", "abc", "bca", "cab", "abc"]  # 2 warm-up rounds, then round r starts with model r mod 3
    assert "".join(log) == "".join(rounds) * 2


def test_phone_delegates_and_bad_counts_are_refused(tmp_path):
    model = tmp_path / "m.tflite"
    model.write_bytes(tiny_tflite.tanh_logits())
    with pytest.raises(UserError, match="runs on a phone"):
        host.bench_host([model], delegate="nnapi")
    with pytest.raises(UserError, match="runs must be >= 1"):
        host.bench_host([model], runs=0)


def test_a_broken_model_is_named(tmp_path, capsys):
    bad = tmp_path / "broken.tflite"
    bad.write_bytes(b"not a flatbuffer at all")
    with pytest.raises(SystemExit) as e:
        main(["bench", str(bad), "--runs", "1"])
    assert e.value.code == 2 and "broken.tflite" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", str(tmp_path / "missing.tflite")])
    assert "missing.tflite: model file not found" in capsys.readouterr().err


def test_miou_beside_latency_on_penn_fudan(shared, tmp_path, capsys):
    model = shared("models", "official", "deeplabv3_257_mv_gpu.tflite")
    data = shared("data", "pennfudan", "PennFudanPed")
    main(["bench", str(model), "--runs", "2", "--warmup", "0", "--threads", "2", "--no-memory", "--data", str(data),
          "--format", "pennfudan", "--subset", "1::60", "--report", str(tmp_path / "r")])  # images 1 and 61
    (r,) = json.loads((tmp_path / "r.json").read_text())["results"]
    assert r["eval_images"] == 2 and set(r["iou"]) == {"background", "person"}
    assert r["iou"]["person"] > 0.3  # the VOC model finds the pedestrians (class 15 -> person)
    assert r["miou"] == pytest.approx((r["iou"]["background"] + r["iou"]["person"]) / 2)
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
    md = (tmp_path / "r.md").read_text()
    assert "IoU person" in md and "(pennfudan, subset 1::60)" in md and "--subset 1::60" in md


BENCH_BODY = """
    from edge_deeplab.cli import main
    try:
        main(["bench", {model!r}, "--runs", "2", "--warmup", "1", "--threads", "1", "--data", {data!r},
              "--format", "pennfudan", "--class-map", "1:1", "--class-map", "2:1", "--default-class", "0",
              "--report", {prefix!r}])
    except SystemExit as e:
        assert not e.code, e.code
"""


def test_bench_of_tflite_files_never_imports_tensorflow(tmp_path):
    model = tmp_path / "tiny.tflite"
    model.write_bytes(tiny_tflite.tanh_logits(16, 16))
    data = tmp_path / "ped"
    (data / "PNGImages").mkdir(parents=True)
    (data / "PedMasks").mkdir()
    image = tiny_tflite.red_blue_image(24, 32)  # red (class 0) left, blue (class 2 -> person) right
    cv2.imwrite(str(data / "PNGImages" / "a.png"), image)
    cv2.imwrite(str(data / "PedMasks" / "a_mask.png"), (tiny_tflite.red_blue_labels(24, 32) > 0).astype(np.uint8))
    prefix = tmp_path / "out" / "r"
    _, report = run_without_tensorflow(BENCH_BODY.format(model=str(model), data=str(data), prefix=str(prefix)))
    assert report == {"attempts": [], "loaded": []}
    (r,) = json.loads(prefix.with_suffix(".json").read_text())["results"]
    assert r["miou"] == pytest.approx(1.0)  # the tiny model's classes are exactly the mask's halves
    assert prefix.with_suffix(".png").is_file() and prefix.with_suffix(".csv").is_file()


def test_json_prints_the_results_and_json_file_writes_them(tmp_path, capsys):
    model = tmp_path / "tiny.tflite"
    model.write_bytes(tiny_tflite.tanh_logits())
    capsys.readouterr()
    main(["bench", str(model), "--runs", "2", "--warmup", "0", "--threads", "1", "--no-memory", "--json",
          "--json-file", str(tmp_path / "r.json")])
    printed = json.loads(capsys.readouterr().out)
    written = json.loads((tmp_path / "r.json").read_text())
    assert [r["model"] for r in printed["results"]] == ["tiny"] == [r["model"] for r in written["results"]]
    assert printed["results"] == written["results"] and printed["meta"] == written["meta"]
