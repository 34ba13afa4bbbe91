"""The inference path (predict, webcam, eval of a .tflite) runs where TensorFlow is not installed.

Checked in a fresh interpreter in which importing TensorFlow or Keras fails and is recorded.
"""
import json
import subprocess
import sys
import textwrap

import cv2

import tiny_tflite

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
    import edge_deeplab.runtime, edge_deeplab.tflite_metadata, edge_deeplab.visualize
    import edge_deeplab.predict, edge_deeplab.video
    from edge_deeplab.cli import main

    main(["predict", "-m", {model!r}, "--threads", "1", {image!r}, "-o", {out!r}, "--json"])
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
