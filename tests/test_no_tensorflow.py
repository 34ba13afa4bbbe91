"""The TensorFlow boundary is the folder boundary: edge_deeplab.model, .train and .export may import
TensorFlow; every other module (data/, tflite/, runtime/, bench/ and the top-level ones) imports without it,
and none of them imports the TensorFlow side, not even inside a function; only cli.py crosses, lazily, in
the verbs that build, train or convert. The inference path (predict, webcam, eval of a .tflite) runs where
TensorFlow is not installed.

Checked in a fresh interpreter in which importing TensorFlow or Keras fails and is recorded.
"""
import ast
import json
import pkgutil
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2

import edge_deeplab
import tiny_tflite

TENSORFLOW_SIDE = ("model", "train", "export")  # packages of edge_deeplab that may import TensorFlow
BRIDGE = "edge_deeplab.cli"  # the one TF-free module that imports the TensorFlow side (lazily)

HEAVY = ("tensorflow", "tf_keras", "keras", "tensorflow_model_optimization")

PRELUDE = textwrap.dedent("""
    import importlib.abc, json, sys

    HEAVY = {heavy!r}
    attempts = []

    class BlockHeavy(importlib.abc.MetaPathFinder):
        # behave as if TensorFlow were not installed, and note every attempt to import it
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in HEAVY:
                attempts.append(name)
                raise ImportError("blocked by the test: " + name)
            return None

    sys.meta_path.insert(0, BlockHeavy())
""")
EPILOGUE = textwrap.dedent("""
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in HEAVY)
    print(json.dumps({"attempts": attempts, "loaded": loaded}))
""")


def run_without_tensorflow(body: str, timeout=300):
    """Run ``body`` in a fresh interpreter where TensorFlow and Keras cannot be imported.

    Returns (completed process, {"attempts": [...], "loaded": [...]}) where both lists should be empty.
    """
    script = PRELUDE.format(heavy=HEAVY) + textwrap.dedent(body) + EPILOGUE
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, run.stderr
    return run, json.loads(run.stdout.strip().splitlines()[-1])


BODY = """
    import edge_deeplab.runtime.interpreter, edge_deeplab.tflite.metadata, edge_deeplab.runtime.visualize
    import edge_deeplab.runtime.predict, edge_deeplab.runtime.video
    from edge_deeplab.cli import main

    main(["predict", "-m", {model!r}, "--threads", "1", {image!r}, "-o", {out!r}, "--json-files"])
    main(["webcam", "-m", {model!r}, "--threads", "1", "--source", {video!r}, "--no-display",
          "--output", {out!r} + "/v.mp4"])
    main(["eval", {model!r}, "--threads", "1", "--data", {data!r}, "--format", "folder", "--data-classes", "3",
          "--no-progress"])
"""


def test_predict_webcam_and_tflite_eval_never_import_tensorflow(tmp_path):
    model = tmp_path / "tiny.tflite"
    model.write_bytes(tiny_tflite.tanh_logits(16, 16))
    image, video, out, data = tmp_path / "in.png", tmp_path / "in.avi", tmp_path / "out", tmp_path / "data"
    frame = tiny_tflite.red_blue_image(24, 32)
    cv2.imwrite(str(image), frame)
    for folder, picture in (("images", frame), ("masks", tiny_tflite.red_blue_labels(24, 32))):
        (data / folder).mkdir(parents=True)
        cv2.imwrite(str(data / folder / "in.png"), picture)  # a one-image dataset: image and class-id mask
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    for _ in range(3):
        writer.write(frame)
    writer.release()

    run, report = run_without_tensorflow(BODY.format(model=str(model), image=str(image), video=str(video),
                                                     out=str(out), data=str(data)))
    assert report == {"attempts": [], "loaded": []}
    assert (out / "in_mask.png").exists() and (out / "in.json").exists() and (out / "v.mp4").exists()
    assert "miou" in run.stdout.lower()


def tensorflow_free_modules() -> list[str]:
    """Every module of edge_deeplab outside the TensorFlow-side packages, found by walking the package."""
    found = ["edge_deeplab"]
    for info in pkgutil.walk_packages(edge_deeplab.__path__, "edge_deeplab."):
        if info.name.split(".")[1] not in TENSORFLOW_SIDE and info.name != "edge_deeplab.__main__":  # runs the CLI
            found.append(info.name)
    return sorted(found)


def test_the_walk_finds_every_stage():
    modules = tensorflow_free_modules()
    for expected in ("edge_deeplab.cli", "edge_deeplab.data.datasets", "edge_deeplab.tflite.graph",
                     "edge_deeplab.runtime.interpreter", "edge_deeplab.bench.host", "edge_deeplab.choices"):
        assert expected in modules
    assert not any(m.startswith(("edge_deeplab.model", "edge_deeplab.train", "edge_deeplab.export")) for m in modules)


def test_every_tensorflow_free_module_imports_without_tensorflow():
    modules = tensorflow_free_modules()
    run, report = run_without_tensorflow("import importlib\n" + "".join(
        f"importlib.import_module({m!r})\n" for m in modules))
    assert report == {"attempts": [], "loaded": []}


def _imported_names(path: Path) -> set:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):  # inside functions too
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_no_tensorflow_free_module_reaches_the_tensorflow_side():
    forbidden = tuple(HEAVY) + tuple(f"edge_deeplab.{p}" for p in TENSORFLOW_SIDE)
    crossings = {}
    for module in tensorflow_free_modules():
        if module == BRIDGE:
            continue
        spec = __import__("importlib.util").util.find_spec(module)
        bad = sorted(n for n in _imported_names(Path(spec.origin)) if n == forbidden or
                     any(n == f or n.startswith(f + ".") for f in forbidden))
        if bad:
            crossings[module] = bad
    assert crossings == {}
