"""benchmarks/person_models.py's verdicts and report from given figures (the recipe itself trains for minutes)."""
import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def recipe():
    sys.path.insert(0, str(BENCHMARKS))  # the recipe imports its sibling recipe_steps
    try:
        spec = importlib.util.spec_from_file_location("person_models", BENCHMARKS / "person_models.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["person_models"] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("person_models", None)
        sys.path.remove(str(BENCHMARKS))


def figures(accurate_iou, accurate_ms, realtime_iou, realtime_fps):
    def ours(iou, ms, fps, size):
        return {"path": f"/w/{size}.tflite", "official": False, "person_iou": iou, "median_ms": ms,
                "video_fps": fps, "size_mb": 2.6, "settings": {"input_size": size},
                "person_iou_stages": {"imported": iou - 0.05, "float": iou, "int8": iou}}

    def official(name, iou, ms, fps):
        return {"path": f"/s/{name}.tflite", "official": True, "person_iou": iou, "median_ms": ms,
                "video_fps": fps, "size_mb": 2.2}

    return {"accurate": ours(accurate_iou, accurate_ms, 30.0, 433), "realtime": ours(realtime_iou, 6.0, realtime_fps, 289),
            "deeplabv3_mnv2_pascal_quant": official("deeplabv3_mnv2_pascal_quant", 0.74, 34.0, 20.0),
            "deeplabv3_mnv2_dm05_pascal_quant": official("deeplabv3_mnv2_dm05_pascal_quant", 0.66, 12.0, 30.0),
            "deeplabv3_257_mv_gpu": official("deeplabv3_257_mv_gpu", 0.63, 9.0, 40.0)}


def test_targets_need_both_accuracy_and_speed(recipe):
    met = recipe.targets(figures(0.78, 16.0, 0.69, 41.0))
    assert met["accurate"]["met"] and met["realtime"]["met"]
    assert met["accurate"]["latency_ratio"] == pytest.approx(16 / 34)
    slow = recipe.targets(figures(0.78, 18.0, 0.69, 39.0))  # accurate enough, too slow
    assert not slow["accurate"]["met"] and not slow["realtime"]["met"]
    weak = recipe.targets(figures(0.76, 16.0, 0.67, 41.0))  # fast enough, 2 and 4 points short
    assert not weak["accurate"]["met"] and not weak["realtime"]["met"]


def test_report_lists_every_model_and_the_pareto_front(recipe):
    models = figures(0.78, 16.0, 0.69, 41.0)
    report = {"machine": {"cpus": 2, "platform": "x", "load_avg_before": [0.5]},
              "settings": {"runs": 50, "threads": 2, "video_frames": 400, "rounds": 3}, "models": models,
              "targets": recipe.targets(models), "steps": []}
    text = recipe.markdown(report)
    for name in models:
        assert f"| {name} |" in text
    # the real-time model is the fastest, the accurate one the most accurate; the official ones are beaten
    assert recipe.pareto_names(models) == {"realtime", "accurate"}
    assert "target: >= +3 at <= 0.5x): met" in text
    assert "| accurate | 433 | 73.00 | 78.00 | - | 78.00 |" in text  # no distillation stage: a dash


def test_cached_measurements_are_keyed_by_the_model_files_content(recipe, tmp_path):
    model = tmp_path / "accurate.tflite"
    model.write_bytes(b"first export")
    models = {"accurate": {"path": str(model)}}
    before = recipe.model_files(models)
    model.write_bytes(b"retrained, same path")  # a rerun step rewrites the file in place
    assert recipe.model_files(models) != before
    assert recipe.model_files(models)["accurate"][0] == str(model)
