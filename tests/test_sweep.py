"""`edge-deeplab bench --sweep`: spec parsing, and a tiny real sweep that resumes where it stopped."""
import json

import pytest

from edge_deeplab.bench import host
from edge_deeplab.export import sweep
from edge_deeplab.bench.run import DataSpec
from edge_deeplab.errors import UserError

pytestmark = pytest.mark.slow  # builds and converts sweep variants


def test_inline_spec():
    spec = sweep.parse_spec("source=m.tflite; os=8,16 ;decoder=0,1;quant=fp32,int8;size=257,129x193")
    assert spec.source == "m.tflite" and spec.os == (8, 16) and spec.decoder == (False, True)
    assert spec.quant == ("fp32", "int8") and spec.size == ((257, 257), (129, 193))
    keys = [v.key for v in spec.variants((513, 513))]
    assert len(keys) == 16 and len(set(keys)) == 16
    assert keys[0] == "os8_nodec_fp32_257" and "os16_dec_int8_129x193" in keys
    assert sweep.parse_spec("source=m.tflite").variants((513, 513)) == [sweep.Variant(16, False, "fp32", (513, 513))]


def test_json_spec_paths_are_relative_to_the_file(tmp_path):
    (tmp_path / "specs").mkdir()
    path = tmp_path / "specs" / "study.json"
    path.write_text(json.dumps({"_comment": "x", "source": "../m.tflite", "os": [16, 32], "quant": "fp16",
                                "calibration": "imgs", "calibration_images": 8}))
    spec = sweep.parse_spec(str(path))
    assert spec.os == (16, 32) and spec.quant == ("fp16",) and spec.calibration_images == 8
    assert spec.path(spec.source) == tmp_path / "specs" / ".." / "m.tflite"
    assert spec.path(spec.calibration) == tmp_path / "specs" / "imgs"


def test_grids_are_a_union_of_crosses(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"source": "m.tflite", "quant": ["fp32"], "grids": [
        {"os": [8, 16], "quant": ["fp32", "int8"]}, {"os": [16], "decoder": [1]}, {"os": [8]}]}))
    keys = [v.key for v in sweep.parse_spec(str(path)).variants((257, 257))]
    assert keys == ["os8_nodec_fp32_257", "os8_nodec_int8_257", "os16_nodec_fp32_257", "os16_nodec_int8_257",
                    "os16_dec_fp32_257"]  # the third grid repeats a variant: listed once
    path.write_text(json.dumps({"source": "m.tflite", "grids": [{"stride": [8]}]}))
    with pytest.raises(UserError, match="'grids' must be a list of objects"):
        sweep.parse_spec(str(path))


@pytest.mark.parametrize("text,message", [
    ("os=8", "'source' is required"),
    ("source=m.tflite;os=12", "os must be among 8, 16, 32"),
    ("source=m.tflite;quant=int4", "quant must be among"),
    ("source=m.tflite;size=20", "bad size"),
    ("source=m.tflite;os=8,8", "lists a value twice"),
    ("source=m.tflite;stride=8", "unknown key(s) stride"),
    ("source=m.tflite;decoder=maybe", "bad decoder"),
    ("source=m.tflite;os", "expected key=value"),
])
def test_bad_specs(text, message):
    with pytest.raises(UserError) as e:
        sweep.parse_spec(text)
    assert message in str(e.value)


def test_spec_file_errors(tmp_path):
    with pytest.raises(UserError, match="cannot read"):
        sweep.parse_spec(str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        sweep.parse_spec(str(tmp_path / "bad.json"))


def test_damaged_cache_is_reported(tmp_path):
    (tmp_path / sweep.CACHE_FILE).write_text("{half")
    with pytest.raises(UserError, match="damaged sweep cache"):
        sweep.SweepCache(tmp_path)


class Interrupted(Exception):
    pass


def test_tiny_sweep_resumes_where_it_stopped(shared, tmp_path, monkeypatch):
    """The official 257 weights rebuilt at 65x65 (OS 16, fp32), one real conversion: interrupted while
    converting, then while scoring; each rerun does only what is missing, the last one nothing."""
    official = shared("models", "official", "deeplabv3_257_mv_gpu.tflite")
    data = DataSpec(str(shared("data", "pennfudan", "PennFudanPed")), "pennfudan", max_images=2)
    spec = sweep.parse_spec(f"source={official};os=16;quant=fp32;size=65")
    work = tmp_path / "work"
    settings = dict(baselines=[official], threads=(1,), runs=2, warmup=1, data=data, memory=False, progress=False)

    def interrupt(*args, **kwargs):
        raise Interrupted

    def must_not_run(*args, **kwargs):
        raise AssertionError("a finished step ran again")

    real_convert, real_miou = sweep.convert_variant, sweep.measure_miou
    real_load, real_bench = sweep.Sources.load, host.bench_host
    monkeypatch.setattr(sweep, "convert_variant", interrupt)  # killed while converting
    with pytest.raises(Interrupted):
        sweep.run_sweep(spec, work, **settings)
    assert not (work / sweep.CACHE_FILE).exists() or not json.loads((work / sweep.CACHE_FILE).read_text())["variants"]

    monkeypatch.setattr(sweep, "convert_variant", real_convert)
    monkeypatch.setattr(sweep, "measure_miou", interrupt)  # killed while scoring the first model
    with pytest.raises(Interrupted):
        sweep.run_sweep(spec, work, **settings)
    cached = json.loads((work / sweep.CACHE_FILE).read_text())
    assert list(cached["variants"]) == ["os16_nodec_fp32_65"] and not cached["accuracy"]
    assert (work / "models" / "os16_nodec_fp32_65.tflite").is_file()

    monkeypatch.setattr(sweep, "convert_variant", must_not_run)
    monkeypatch.setattr(sweep.Sources, "load", must_not_run)
    monkeypatch.setattr(sweep, "measure_miou", real_miou)
    first = sweep.run_sweep(spec, work, **settings)
    assert [r.model for r in first] == ["deeplabv3_257_mv_gpu", "os16_nodec_fp32_65"]
    assert first[0].baseline and not first[1].baseline and first[0].variant is None
    assert first[1].variant == {"os": 16, "decoder": 0, "quant": "fp32", "size": 65}
    assert first[1].input == "65x65 float32" and first[1].runs == 2 and first[1].median_ms > 0
    assert all(0 <= r.miou <= 1 and r.eval_images == 2 for r in first)

    monkeypatch.setattr(sweep, "measure_miou", must_not_run)
    monkeypatch.setattr(host, "bench_host", must_not_run)
    again = sweep.run_sweep(spec, work, **settings)
    assert [r.to_dict() for r in again] == [r.to_dict() for r in first]

    # a damaged cached .tflite (its report no longer matches it) is converted again, not measured
    model = work / "models" / "os16_nodec_fp32_65.tflite"
    model.write_bytes(model.read_bytes()[:1000])
    converted = []
    monkeypatch.setattr(sweep, "convert_variant", lambda *a, **k: converted.append(a[1]) or real_convert(*a, **k))
    monkeypatch.setattr(sweep.Sources, "load", real_load)
    monkeypatch.setattr(sweep, "measure_miou", real_miou)
    monkeypatch.setattr(host, "bench_host", real_bench)
    sweep.run_sweep(spec, work, **settings)
    assert converted == [model]
    from edge_deeplab.tflite.report import read_report

    assert read_report(model)["sha256"]


def test_qat_variants_need_their_qat_source(tmp_path):
    spec = sweep.parse_spec("source=f.keras;quant=int8,int8_qat;qat_source=q.h5")
    assert spec.qat_source == "q.h5" and [v.quant for v in spec.variants((65, 65))] == ["int8", "int8_qat"]
    sources = sweep.Sources(spec)
    assert sources.source_name(spec.variants((65, 65))[1]) == "q.h5"
    assert sources.source_name(spec.variants((65, 65))[0]) == "f.keras"
    bare = sweep.Sources(sweep.parse_spec("source=f.keras;quant=int8_qat;decoder=1;decoder_source=d.keras"))
    with pytest.raises(UserError, match="int8_qat variants need the QAT model .*decoder_qat_source"):
        bare.source_name(sweep.Variant(16, True, "int8_qat", (65, 65)))
