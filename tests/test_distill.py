"""Knowledge distillation: the loss against a hand computation, class maps, and tiny students trained from a
.tflite teacher (on unlabelled images) and from a .keras teacher, resumable like any run."""
import json

import cv2
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("tf_keras")

import tiny_tflite  # noqa: E402
from edge_deeplab.cli import main  # noqa: E402
from edge_deeplab.config import DeepLabConfig  # noqa: E402
from edge_deeplab.data.datasets import IGNORE_LABEL, UNLABELLED, open_dataset  # noqa: E402
from edge_deeplab.errors import OptionError  # noqa: E402
from edge_deeplab.model.deeplab import build_deeplab, save_model  # noqa: E402
from edge_deeplab.train.distill import class_matrix, distillation_loss  # noqa: E402
from edge_deeplab.train.trainer import TrainConfig, segmentation_loss, train  # noqa: E402

SIZE = 33
COLOURS = [(255, 40, 40), (40, 255, 40), (40, 40, 255)]  # RGB: the tanh teacher's classes 0, 1, 2


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_the_loss_is_t_squared_kl_over_the_image_pixels():
    rng = np.random.default_rng(0)
    teacher, student = rng.normal(size=(1, 2, 3, 4)), rng.normal(size=(1, 2, 3, 2))
    labels = np.array([[[0, UNLABELLED, 1], [IGNORE_LABEL, 1, 0]]])  # one padding pixel
    matrix = class_matrix(4, 2, {3: 1})  # teacher classes 0, 1, 2 -> student 0; 3 -> 1
    assert matrix.tolist() == [[1, 0], [1, 0], [1, 0], [0, 1]]
    got = distillation_loss(tf.constant(labels), tf.constant(student, tf.float32), tf.constant(teacher, tf.float32),
                            matrix, temperature=2.0).numpy()
    target = _softmax(teacher / 2) @ matrix
    kl = (target * (np.log(target) - np.log(_softmax(student / 2)))).sum(-1)
    assert got == pytest.approx(4 * kl[labels != IGNORE_LABEL].mean(), rel=1e-5)
    same = distillation_loss(tf.constant(labels), tf.constant(teacher[..., :2], tf.float32),
                             tf.constant(teacher[..., :2], tf.float32), np.eye(2, dtype=np.float32), 2.0)
    assert float(same) == pytest.approx(0, abs=1e-6)
    # the cross entropy leaves unlabelled pixels to the teacher
    only_unlabelled = np.full((1, 2, 3), UNLABELLED)
    assert float(segmentation_loss(tf.constant(only_unlabelled), tf.constant(student, tf.float32))) == 0.0


def test_classes_must_match_or_be_mapped():
    with pytest.raises(OptionError, match="teacher has 21 classes and the student 2.*--distill-class-map"):
        class_matrix(21, 2)
    with pytest.raises(OptionError, match="does not fit"):
        class_matrix(21, 2, {15: 2})
    with pytest.raises(OptionError, match="go with --distill"):
        TrainConfig(unlabelled=("frames",))
    with pytest.raises(OptionError, match="--distill-output-stride go with --distill"):
        TrainConfig(distill_output_stride=8)


def test_a_keras_teacher_runs_at_its_distill_output_stride(tmp_path):
    from edge_deeplab.model.deeplab import model_config
    from edge_deeplab.train.distill import load_teacher

    config = DeepLabConfig(input_size=(SIZE, SIZE), depth_multiplier=0.35, output_stride=16, num_classes=3)
    model = build_deeplab(config)
    rng = np.random.default_rng(0)  # weights that make the logits depend on the image (not the built zero head)
    model.set_weights([rng.uniform(0.02, 0.2, w.shape).astype(np.float32) for w in model.get_weights()])
    save_model(model, tmp_path / "student.keras")
    teacher = load_teacher(tmp_path / "student.keras", (49, 49), output_stride=8)
    assert model_config(teacher.model).output_stride == 8 and model_config(teacher.model).input_size == (49, 49)
    for a, b in zip(teacher.model.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)  # the same weights, other dilations
    images = tf.random.uniform((1, 49, 49, 3), -1, 1, seed=0)
    at16 = load_teacher(tmp_path / "student.keras", (49, 49)).logits(images).numpy()
    assert not np.allclose(teacher.logits(images).numpy(), at16)  # OS 8 sees the image at twice the resolution
    with pytest.raises(OptionError, match="rebuilds a Keras teacher"):
        load_teacher(_tflite(tmp_path), (SIZE, SIZE), output_stride=8)


def test_a_teacher_must_give_scores(tmp_path):
    from edge_deeplab.errors import ModelFileError
    from edge_deeplab.train.distill import load_teacher

    (tmp_path / "ids.tflite").write_bytes(tiny_tflite.argmax_labels())
    with pytest.raises(ModelFileError, match="ids.tflite: a teacher needs per-class scores"):
        load_teacher(tmp_path / "ids.tflite", (SIZE, SIZE))
    with pytest.raises(ModelFileError, match="teacher model not found"):
        load_teacher(tmp_path / "none.keras", (SIZE, SIZE))
    assert load_teacher(_tflite(tmp_path), (SIZE, SIZE)).logits(tf.zeros((2, SIZE, SIZE, 3))).shape == (2, SIZE, SIZE, 3)


def _tflite(tmp_path):
    path = tmp_path / "teacher.tflite"
    path.write_bytes(tiny_tflite.tanh_logits(16, 16))
    return path


def _colour_images(folder, n, seed, labelled=False):
    """Images of three coloured bands; with ``labelled`` their masks (the colour's class) beside them."""
    (folder / "images").mkdir(parents=True)
    if labelled:
        (folder / "masks").mkdir()
    rng = np.random.default_rng(seed)
    for i in range(n):
        order = rng.permutation(3)
        image = np.zeros((SIZE, SIZE, 3), np.uint8)
        label = np.zeros((SIZE, SIZE), np.uint8)
        for band, c in enumerate(order):
            image[band * 11:(band + 1) * 11] = COLOURS[c]
            label[band * 11:(band + 1) * 11] = c
        cv2.imwrite(str(folder / "images" / f"{i}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        if labelled:
            cv2.imwrite(str(folder / "masks" / f"{i}.png"), label)
    return folder


def _agreement(model, images, teacher_classes):
    x = np.stack([img.astype(np.float32) / 127.5 - 1 for img in images])
    return float((model.predict(x, verbose=0).argmax(-1) == teacher_classes).mean())


@pytest.mark.slow  # trains
def test_a_student_learns_the_tflite_teachers_classes_from_unlabelled_images(tmp_path):
    """A .tflite teacher whose classes are the dominant colour (tanh of the normalized RGB channels, at its own
    16x16 input): trained on its soft targets alone (weight 1), mostly from unlabelled images, the student's
    distillation loss falls and its classes move towards the teacher's (a 0.35 network at 33x33 learns
    slowly: 24 steps move it, they do not finish it)."""
    teacher = tmp_path / "teacher.tflite"
    teacher.write_bytes(tiny_tflite.tanh_logits(16, 16))
    data = _colour_images(tmp_path / "data", 2, seed=0, labelled=True)
    frames = _colour_images(tmp_path / "frames", 6, seed=1) / "images"
    keras.utils.set_random_seed(2)
    student = build_deeplab(DeepLabConfig(depth_multiplier=0.35, input_size=(SIZE, SIZE), num_classes=3, dropout=0))
    images = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in sorted(frames.iterdir())]
    expected = np.stack([np.argmax(np.tanh(img / 127.5 - 1), -1) for img in images])
    before = _agreement(student, images, expected)
    config = TrainConfig(epochs=6, batch_size=2, optimizer="adam", learning_rate=1e-2, min_scale=1.0, max_scale=1.0,
                         flip=False, cache=True, distill=str(teacher), distill_weight=1.0, distill_temperature=1.0,
                         unlabelled=(str(frames),))
    result = train(student, open_dataset(data, "folder", num_classes=3), tmp_path / "run", config, progress=False,
                   log_epochs=False)
    history = result.history
    assert [h["steps"] for h in history] == [4 * e for e in range(1, 7)]  # (2 labelled + 6 unlabelled) / 2
    assert history[-1]["loss"] < 0.9 * history[0]["loss"]  # measured: 0.203 -> 0.167
    assert _agreement(result.model, images, expected) > before + 0.04  # measured: 0.40 -> 0.48 in 24 steps
    settings = json.loads((tmp_path / "run" / "run.json").read_text())
    assert settings["train"]["distill"] == str(teacher) and settings["unlabelled_images"] == 6


@pytest.mark.slow  # trains
def test_the_cli_distills_from_a_keras_teacher_and_resumes(tmp_path, capsys):
    data = _colour_images(tmp_path / "data", 4, seed=0, labelled=True)
    keras.utils.set_random_seed(3)
    save_model(build_deeplab(DeepLabConfig(depth_multiplier=0.35, input_size=(SIZE, SIZE), num_classes=21)),
               tmp_path / "teacher.keras")
    args = ["train", "-d", "0.35", "--input-size", str(SIZE), "--num-classes", "3", "--data", str(data),
            "--format", "folder", "--data-classes", "3", "--run-dir", str(tmp_path / "run"), "--epochs", "2",
            "--batch-size", "2", "--distill", str(tmp_path / "teacher.keras"), "--distill-class-map", "15:1",
            "--distill-class-map", "7:2", "--unlabelled", str(data / "images"), "--no-progress"]
    main(args)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [h["steps"] for h in history] == [4, 8] and all(np.isfinite(h["loss"]) for h in history)
    capsys.readouterr()
    main(args)  # finished: nothing to train again
    assert "saved" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:  # other distillation settings in the same run folder: another run
        main(args[:-1] + ["--distill-weight", "0.9", "--no-progress"])
    assert e.value.code == 2 and "other settings" in capsys.readouterr().err


@pytest.mark.slow  # trains
def test_quantization_aware_training_distils_from_the_float_model(tmp_path):
    """QAT with a teacher: the float model the QAT student starts from keeps teaching it (its OS 8 self)."""
    data = _colour_images(tmp_path / "data", 4, seed=0, labelled=True)
    keras.utils.set_random_seed(3)
    save_model(build_deeplab(DeepLabConfig(depth_multiplier=0.35, input_size=(SIZE, SIZE), num_classes=3)),
               tmp_path / "float.keras")
    main(["train", "--qat", "--init", str(tmp_path / "float.keras"), "--data", str(data), "--format", "folder",
          "--data-classes", "3", "--run-dir", str(tmp_path / "run"), "--epochs", "1", "--batch-size", "2",
          "--distill", str(tmp_path / "float.keras"), "--distill-output-stride", "8",
          "--unlabelled", str(data / "images"), "--no-progress"])
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert history[0]["steps"] == 4 and np.isfinite(history[0]["loss"])  # 4 labelled + 4 unlabelled, batch 2
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["train"]["distill_output_stride"] == 8 and run["train"]["qat"]
    assert (tmp_path / "run" / "model_qat.h5").is_file()
