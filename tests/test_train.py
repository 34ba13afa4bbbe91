"""Training: a tiny model overfits a few images; an interrupted run resumes from its checkpoint."""
import json

import cv2
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("tf_keras")

from edge_deeplab.cli import main  # noqa: E402
from edge_deeplab.config import DeepLabConfig  # noqa: E402
from edge_deeplab.data.datasets import open_dataset  # noqa: E402
from edge_deeplab.errors import UserError  # noqa: E402
from edge_deeplab.model.predictor import keras_predictor  # noqa: E402
from edge_deeplab.runtime.evaluate import evaluate  # noqa: E402
from edge_deeplab.model.deeplab import adapt, build_deeplab, load_model, save_model  # noqa: E402
from edge_deeplab.train.trainer import TrainConfig, train  # noqa: E402

pytestmark = pytest.mark.slow  # trains models

SIZE = 33
# no augmentation, no dropout: a run is a deterministic function of its data order
CONFIG = TrainConfig(epochs=6, batch_size=2, optimizer="adam", learning_rate=1e-2, min_scale=1.0, max_scale=1.0,
                     flip=False, cache=True)


def make_shapes_dataset(root, n=4):
    """Bright squares (class 1) on a dark noisy background (class 0)."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        image = rng.integers(0, 60, (SIZE, SIZE, 3), dtype=np.uint8)
        label = np.zeros((SIZE, SIZE), np.uint8)
        y, x, s = rng.integers(0, 14), rng.integers(0, 14), rng.integers(10, 18)
        image[y:y + s, x:x + s] = rng.integers(180, 255, 3)
        label[y:y + s, x:x + s] = 1
        cv2.imwrite(str(root / "images" / f"{i}.png"), image)
        cv2.imwrite(str(root / "masks" / f"{i}.png"), label)
    return root


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    data = make_shapes_dataset(root / "data")
    keras.utils.set_random_seed(1)  # the same initial network every run (some draws start too far to move in 12 steps)
    model = build_deeplab(DeepLabConfig(depth_multiplier=0.35, input_size=(SIZE, SIZE), num_classes=2, dropout=0))
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.5  # moving statistics that follow a 12-step run (DeepLab's 0.997 needs thousands)
    save_model(model, root / "init.keras")
    # the uninterrupted reference run, through the command line
    main(["train", "--init", str(root / "init.keras"), "--data", str(data), "--format", "folder", "--data-classes",
          "2", "--run-dir", str(root / "straight"), "--epochs", "6", "--batch-size", "2", "--optimizer", "adam",
          "--lr", "1e-2", "--min-scale", "1", "--max-scale", "1", "--no-flip", "--cache", "--no-progress"])
    return root, data


def dataset(data):
    return open_dataset(data, "folder", num_classes=2)


def test_tiny_model_overfits(setup):
    root, data = setup
    history = json.loads((root / "straight" / "history.json").read_text())
    assert [h["epoch"] for h in history] == list(range(1, CONFIG.epochs + 1))
    assert history[-1]["loss"] < 0.7 * history[0]["loss"]
    assert history[-1]["learning_rate"] < history[0]["learning_rate"]  # poly decay
    before = evaluate(keras_predictor(load_model(root / "init.keras")), dataset(data), progress=False)
    after = evaluate(keras_predictor(load_model(root / "straight" / "model.keras")), dataset(data), progress=False)
    # 12 steps from a random tiny network: the loss falls reliably, the argmax only starts to follow
    assert after.matrix.miou() > before.matrix.miou()
    assert (root / "straight" / "checkpoints" / "checkpoint").exists()
    assert any((root / "straight" / "logs").iterdir())  # TensorBoard events
    saved = load_model(root / "straight" / "model.keras")
    assert saved.input_shape == (1, SIZE, SIZE, 3) and saved.deeplab_config.num_classes == 2


def test_interrupted_run_resumes_at_the_next_epoch_with_the_same_weights(setup):
    root, data = setup
    run_dir = root / "interrupted"
    init = load_model(root / "init.keras")

    def crash(epoch, step, loss):
        if epoch == 2 and step == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(init, dataset(data), run_dir, CONFIG, step_callback=crash, progress=False, log_epochs=False)
    history = json.loads((run_dir / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert not (run_dir / "model.keras").exists()

    seen = []
    result = train(init, dataset(data), run_dir, CONFIG, step_callback=lambda e, s, l: seen.append((e, s)),
                   progress=False)
    assert result.resumed_at_epoch == 2
    # only the epochs that had not completed, two steps each
    assert seen == [(e, s) for e in range(2, CONFIG.epochs) for s in range(2)]
    assert [h["epoch"] for h in result.history] == list(range(1, CONFIG.epochs + 1))
    straight = load_model(root / "straight" / "model.keras")
    for a, b in zip(result.model.get_weights(), straight.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_a_finished_run_does_not_train_again_and_other_settings_are_refused(setup):
    root, data = setup
    init = load_model(root / "init.keras")
    steps = []
    result = train(init, dataset(data), root / "straight", CONFIG, step_callback=lambda *a: steps.append(a),
                   progress=False)
    assert steps == [] and result.resumed_at_epoch == CONFIG.epochs
    with pytest.raises(UserError, match="other settings .*train"):
        train(init, dataset(data), root / "straight", TrainConfig(epochs=CONFIG.epochs + 1, batch_size=2),
              progress=False)


def test_bad_labels_stop_training_with_the_file_name(setup, tmp_path):
    root, data = setup
    bad = make_shapes_dataset(tmp_path / "bad")
    cv2.imwrite(str(bad / "masks" / "2.png"), np.full((SIZE, SIZE), 7, np.uint8))
    ds = open_dataset(bad, "folder", num_classes=8)  # the dataset allows 8 classes, the model 2
    with pytest.raises(UserError, match=r"2\.png: label 7 .* out of range for a 2-class model"):
        train(load_model(root / "init.keras"), ds, tmp_path / "run", TrainConfig(epochs=1, batch_size=2),
              progress=False)


def test_freeze_bn_keeps_batch_norm_unchanged(setup, tmp_path):
    root, data = setup
    init = load_model(root / "init.keras")
    result = train(init, dataset(data), tmp_path / "frozen", TrainConfig(epochs=1, batch_size=4, freeze_bn=True),
                   progress=False, log_epochs=False)
    batch_norms = [layer.name for layer in init.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert batch_norms
    for name in batch_norms:  # scales, offsets and moving statistics
        for a, b in zip(init.get_layer(name).get_weights(), result.model.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)
    assert not np.array_equal(init.get_layer("logits").get_weights()[0],
                              result.model.get_layer("logits").get_weights()[0])


def test_mirrored_strategy_trains(setup, tmp_path):
    """The tf.distribute path (one CPU replica here; GPUs, workers and TPUs use the same loop)."""
    root, data = setup
    result = train(load_model(root / "init.keras"), dataset(data), tmp_path / "mirrored",
                   TrainConfig(epochs=1, batch_size=2), strategy="mirrored", progress=False, log_epochs=False)
    assert [h["steps"] for h in result.history] == [2] and np.isfinite(result.history[0]["loss"])
    assert (tmp_path / "mirrored" / "model.keras").exists()


def test_adapt_keeps_the_body_and_replaces_the_head(setup):
    root, _ = setup
    init = load_model(root / "init.keras")
    five, fresh = adapt(init, num_classes=5)
    assert fresh == ["logits"]
    assert five.output_shape[-1] == 5 and five.deeplab_config.num_classes == 5
    np.testing.assert_array_equal(five.get_layer("aspp0").get_weights()[0], init.get_layer("aspp0").get_weights()[0])
    # adding the decoder keeps every trained layer, logits included (same 256 input channels)
    with_decoder, fresh = adapt(init, decoder=True)
    assert with_decoder.deeplab_config.decoder and "logits" not in fresh
    assert "feature_projection0" in fresh and not any(name.startswith("block_") for name in fresh)


def test_recalibrated_batch_norm_keeps_the_function_and_takes_the_data_statistics():
    from edge_deeplab.train.trainer import recalibrate_batch_norm

    keras.utils.set_random_seed(1)
    model = build_deeplab(DeepLabConfig(depth_multiplier=0.35, input_size=(SIZE, SIZE), num_classes=3, dropout=0))
    rng = np.random.default_rng(0)
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in norms:  # statistics unlike the data's, as in folded (imported) batch norms
        gamma, beta, mean, var = layer.get_weights()
        layer.set_weights([rng.uniform(0.5, 2, gamma.shape), rng.normal(0, 0.5, beta.shape),
                           rng.normal(0, 0.5, mean.shape), rng.uniform(0.5, 2, var.shape)])
    images = rng.uniform(-1, 1, (4, SIZE, SIZE, 3)).astype(np.float32)
    in_training_mode = model(images, training=True).numpy()  # (this call also moves the moving statistics)
    before = model(images, training=False).numpy()
    gap_before = np.abs(in_training_mode - before).mean()

    assert recalibrate_batch_norm(model, [images[:2], images[2:]]) == len(norms)
    after = model(images, training=False).numpy()
    np.testing.assert_allclose(after, before, rtol=1e-4, atol=1e-4 * np.abs(before).max())
    # the moving mean is now the mean of the first batch norm's input over both batches
    first = norms[0]
    inputs = keras.Model(model.inputs, first.input)(images).numpy()
    np.testing.assert_allclose(first.get_weights()[2], inputs.reshape(-1, inputs.shape[-1]).mean(0), atol=1e-4)
    # training mode (batch statistics) now computes nearly what inference does
    gap_after = np.abs(model(images, training=True).numpy() - after).mean()
    assert gap_after < 1e-3 * gap_before


def test_class_weights_reweight_pixels_not_the_loss_scale():
    from edge_deeplab.train.trainer import segmentation_loss

    labels = tf.constant([[[0, 1], [1, 255]]])
    logits = tf.constant(np.random.default_rng(0).normal(size=(1, 2, 2, 2)), tf.float32)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.where(labels == 255, 0, labels),
                                                        logits=logits).numpy()[0]
    plain = float(segmentation_loss(labels, logits))
    np.testing.assert_allclose(plain, (ce[0, 0] + ce[0, 1] + ce[1, 0]) / 3, rtol=1e-6)
    weighted = float(segmentation_loss(labels, logits, np.array([1.0, 3.0])))
    np.testing.assert_allclose(weighted, (ce[0, 0] + 3 * ce[0, 1] + 3 * ce[1, 0]) / 7, rtol=1e-6)
    np.testing.assert_allclose(float(segmentation_loss(labels, logits, np.array([2.0, 2.0]))), plain, rtol=1e-6)
