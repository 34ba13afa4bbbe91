"""Training stage: float training / fine-tuning and quantization-aware fine-tuning of DeepLab models.

A run lives in a run directory: ``run.json`` (the settings), ``checkpoints/`` (weights, optimizer, step
and epoch after every epoch; the checkpoint index is replaced atomically, so a crash leaves the previous
epoch's checkpoint intact), ``history.json``, TensorBoard ``logs/``, the final ``model.keras`` and, when
validating after every epoch, ``best.keras``: the model of the epoch with the best validation mIOU (QAT:
``model_qat.h5``, ``best_qat.h5``).
Starting again with the same run directory resumes after the last completed epoch. The data order and
augmentations of an epoch depend only on (seed, epoch) (see pipeline.py), so a resumed run sees what an
uninterrupted one would have seen; only dropout masks are not replayed.

Models are trained at the crop size with a free batch dimension (the saved models have batch 1 for the
converter); output stride and input size do not change weight shapes, so the trained weights go back
into a model of the original size (and, by default, output stride).
"""
from __future__ import annotations

import dataclasses
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
import tf_keras as keras
from tqdm import tqdm

from edge_deeplab.config import DeepLabConfig
from edge_deeplab.datasets import IGNORE_LABEL, SegmentationDataset, class_weights
from edge_deeplab.errors import UserError
from edge_deeplab.io_utils import crash_point, write_json_atomic
from edge_deeplab.model.deeplab import build_deeplab, model_config, save_model
from edge_deeplab.pipeline import Augment, SampleSource, training_dataset

STRATEGIES = ("default", "mirrored", "multi-worker", "tpu")
OPTIMIZERS = ("sgd", "adam")
CALIBRATION_BATCHES = 8  # batches that set the activation ranges a QAT run starts from
BN_RECALIBRATION_BATCHES = 16  # batches that re-estimate batch-norm statistics before unfrozen training


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    batch_size: int = 8
    crop_size: tuple | None = None  # (h, w); None: the model's input size
    learning_rate: float = 0.007  # DeepLab's base rate for SGD; fine-tuning usually wants less
    end_learning_rate: float = 0.0
    power: float = 0.9  # poly schedule: lr = (base - end) * (1 - step / steps) ** power + end
    optimizer: str = "sgd"  # momentum SGD as DeepLab, or Adam
    momentum: float = 0.9
    weight_decay: float = 4e-5  # L2 on conv kernels, as DeepLab's l2_regularizer
    freeze_bn: bool = False  # keep batch-norm statistics and scales fixed (small batches)
    # Trainable batch norm on a fresh float run first re-estimates every batch norm's statistics on training
    # batches, keeping the model's function: imported weights carry folded (identity) batch norms whose
    # statistics are nothing like a batch's, and training mode would otherwise start from another network.
    recalibrate_bn: bool = True
    class_weights: str | None = None  # none | median-frequency | a file of one weight per class
    output_stride: int | None = None  # train at this output stride (e.g. 16), save at the model's own
    max_resize: int | None = None  # scale images to this longer side before the random scaling
    min_scale: float = 0.5
    max_scale: float = 2.0
    flip: bool = True
    label_map: dict = dataclasses.field(default_factory=dict)  # dataset class id -> model class id
    qat: bool = False
    quantization_from: str | None = None  # QAT: start from (and keep) this official model's quantization
    seed: int = 0
    cache: bool = False

    def __post_init__(self):
        if self.crop_size is not None:
            size = (self.crop_size, self.crop_size) if isinstance(self.crop_size, int) else self.crop_size
            object.__setattr__(self, "crop_size", tuple(int(s) for s in size))
        object.__setattr__(self, "label_map", {int(k): int(v) for k, v in (self.label_map or {}).items()})
        if self.epochs < 1 or self.batch_size < 1:
            raise UserError(f"epochs and batch size must be at least 1 (got {self.epochs}, {self.batch_size})")
        if self.optimizer not in OPTIMIZERS:
            raise UserError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if not 0 < self.min_scale <= self.max_scale:
            raise UserError(f"scale range must satisfy 0 < min <= max, got {self.min_scale}..{self.max_scale}")
        if self.quantization_from is not None:
            if not self.qat:
                raise UserError("--quantization-from goes with --qat")
            if not Path(self.quantization_from).is_file():
                raise UserError(f"{self.quantization_from}: model file not found")

    def to_dict(self):
        d = dataclasses.asdict(self)
        d["crop_size"] = list(self.crop_size) if self.crop_size else None
        d["label_map"] = {str(k): v for k, v in self.label_map.items()}
        return d


@dataclasses.dataclass
class TrainResult:
    model: keras.Model  # the trained model at the original input size, batch 1 (QAT-wrapped with qat=True)
    output: Path
    history: list
    resumed_at_epoch: int  # 0 for a fresh run


def make_strategy(name: str = "default", tpu: str | None = None) -> tf.distribute.Strategy:
    """default: one device; mirrored: all local GPUs; multi-worker: the cluster in $TF_CONFIG; tpu: a TPU."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi-worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, tf.errors.OpError) as e:
            raise UserError(f"no TPU found ({str(e).splitlines()[0]})") from None
        return tf.distribute.TPUStrategy(resolver)
    raise UserError(f"strategy must be one of {', '.join(STRATEGIES)}, got {name!r}")


def variant(model: keras.Model, config: DeepLabConfig, free_batch=False) -> keras.Model:
    """``model``'s weights in a float model built from ``config`` (another size or output stride).

    ``free_batch``: a batch dimension of any size, for training (the builder fixes it at 1).
    """
    new = build_deeplab(config)
    if free_batch:
        h, w = config.input_size
        new = keras.models.clone_model(new, input_tensors=keras.Input(shape=(h, w, 3), name="image"))
    new.set_weights(model.get_weights())
    new.deeplab_config = config
    return new


def segmentation_loss(labels, logits, class_weights=None):
    """Mean softmax cross entropy over the pixels that are not ignore; with ``class_weights`` (one per
    class) each pixel counts with its class's weight and the mean is over the weights (so a weighting
    changes the balance between classes, not the scale of the loss)."""
    valid = tf.not_equal(labels, IGNORE_LABEL)
    safe = tf.where(valid, labels, 0)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=safe, logits=logits)
    weight = tf.cast(valid, tf.float32)
    if class_weights is not None:
        weight *= tf.gather(tf.constant(class_weights, tf.float32), safe)
    return tf.reduce_sum(ce * weight) / tf.maximum(tf.reduce_sum(weight), 1e-6)


def _decayed_variables(model):
    return [v for v in model.trainable_variables if re.search(r"kernel:\d+$", v.name)]


def _freeze_batch_norm(model):
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)  # QAT wraps layers
        if isinstance(inner, keras.layers.BatchNormalization):
            layer.trainable = False


def _is_chief(strategy) -> bool:
    """Whether this process writes the run's files: the chief, or worker 0 of a cluster without one."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or resolver.task_type in (None, "chief"):
        return True
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in resolver.cluster_spec().jobs


class Run:
    """The files of a run directory."""

    def __init__(self, run_dir, strategy):
        self.dir = Path(run_dir)
        self.chief = _is_chief(strategy)
        # every worker must write its checkpoint; only the chief's is kept (TF's multi-worker pattern)
        worker = getattr(getattr(strategy, "cluster_resolver", None), "task_id", 0)
        self.checkpoints = self.dir / ("checkpoints" if self.chief else f".worker{worker}_checkpoints")
        self.settings = self.dir / "run.json"
        self.history_file = self.dir / "history.json"

    def check_settings(self, settings: dict):
        """A fresh run records its settings; a resumed one must have the same (else its schedule differs).
        A run that never finished an epoch (stopped by bad data, say) has nothing to resume: a rerun with
        corrected settings starts it afresh."""
        if self.settings.exists() and tf.train.latest_checkpoint(str(self.checkpoints)):
            old = json.loads(self.settings.read_text())
            changed = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
            if changed:
                raise UserError(f"{self.dir} holds a run with other settings ({', '.join(changed)} differ); "
                                "use another --run-dir or the same settings to resume it")
        if self.chief:
            write_json_atomic(self.settings, settings)

    def best_model(self, qat: bool) -> Path:
        """The model of the epoch with the best validation mIOU so far (model selection)."""
        return self.dir / ("best_qat.h5" if qat else "best.keras")

    def history(self) -> list:
        return json.loads(self.history_file.read_text()) if self.history_file.exists() else []


def train(model: keras.Model, dataset: SegmentationDataset, run_dir, config: TrainConfig = TrainConfig(),
          output=None, val_dataset: SegmentationDataset | None = None, val_class_map=None, val_default_class=None,
          strategy: str | tf.distribute.Strategy = "default", step_callback=None, progress=True,
          log_epochs=True) -> TrainResult:
    """Train ``model`` (float; with ``config.qat`` a float model to fine-tune quantization-aware) on
    ``dataset``; resume from ``run_dir`` when it holds checkpoints of the same run.

    ``progress`` shows a progress bar per epoch, ``log_epochs`` a line after each (on stderr).
    ``val_dataset`` is evaluated (mIOU) after every epoch, predictions mapped to its classes by
    ``val_class_map`` ({model class: dataset class}) and ``val_default_class``.
    ``step_callback(epoch, step, loss)`` runs after every step.
    Returns the trained model at the model's own input size and output stride, saved to ``output``
    (default ``run_dir/model.keras``; QAT models: ``run_dir/model_qat.h5``, see qat.py).
    """
    model_cfg = model_config(model)
    crop = config.crop_size or model_cfg.input_size
    train_cfg = model_cfg.replace(input_size=crop, output_stride=config.output_stride or model_cfg.output_stride)
    strategy = make_strategy(strategy) if isinstance(strategy, str) else strategy
    run = Run(run_dir, strategy)
    output = Path(output) if output else run.dir / ("model_qat.h5" if config.qat else "model.keras")
    if output.suffix != (".h5" if config.qat else ".keras"):
        raise UserError(f"{output}: {'QAT models are saved as .h5' if config.qat else 'models are saved as .keras'}")
    model_cfg = _with_class_names(model_cfg, dataset, config)
    source = SampleSource(dataset, model_cfg.num_classes, config.label_map, cache=config.cache)
    weights = class_weights(config.class_weights, dataset, model_cfg.num_classes, config.label_map)
    run.check_settings({"train": config.to_dict(), "model": model_cfg.to_dict(), "dataset": dataset.name,
                        "samples": len(dataset.pairs),
                        "class_weights": None if weights is None else [round(float(w), 6) for w in weights]})
    steps_per_epoch = len(source) // config.batch_size
    total_steps = config.epochs * steps_per_epoch
    aug = Augment(crop, config.max_resize, config.min_scale, config.max_scale, config.flip)

    with strategy.scope():
        net = float_net = variant(model, train_cfg, free_batch=True)
        if config.qat:
            from edge_deeplab.qat import quantize_deeplab

            net = quantize_deeplab(float_net)
        if config.freeze_bn:
            _freeze_batch_norm(net)
        schedule = keras.optimizers.schedules.PolynomialDecay(config.learning_rate, max(total_steps, 1),
                                                              config.end_learning_rate, power=config.power)
        if config.optimizer == "sgd":
            optimizer = keras.optimizers.SGD(schedule, momentum=config.momentum)
        else:
            optimizer = keras.optimizers.Adam(schedule)
        optimizer.build(net.trainable_variables)
        epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        checkpoint = tf.train.Checkpoint(model=net, optimizer=optimizer, epoch=epoch_var)
    manager = tf.train.CheckpointManager(checkpoint, str(run.checkpoints), max_to_keep=2)
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
    start_epoch = int(epoch_var.numpy())
    try:  # both read training batches: a bad sample surfaces here first
        if config.qat and not manager.latest_checkpoint:
            _start_quantization(net, float_net, config, source, aug)
        elif not (config.qat or config.freeze_bn or manager.latest_checkpoint) and config.recalibrate_bn:
            batches = training_dataset(source, aug, config.batch_size, epoch=0, seed=config.seed)
            recalibrate_batch_norm(net, (images for images, _ in batches.take(BN_RECALIBRATION_BATCHES)))
    except tf.errors.OpError as e:
        raise _data_error(e) from None
    if config.quantization_from:
        from edge_deeplab.qat import freeze_weight_ranges

        freeze_weight_ranges(net)
    history = run.history()[:start_epoch]
    decayed = _decayed_variables(net)
    replicas = strategy.num_replicas_in_sync

    def replica_step(images, labels):
        with tf.GradientTape() as tape:
            loss = segmentation_loss(labels, net(images, training=True), weights)
            l2 = tf.add_n([tf.nn.l2_loss(v) for v in decayed]) if decayed else 0.0
            total = (loss + config.weight_decay * l2) / replicas
        grads = tape.gradient(total, net.trainable_variables)
        optimizer.apply_gradients(zip(grads, net.trainable_variables))
        return loss

    @tf.function
    def train_step(images, labels):
        losses = strategy.run(replica_step, args=(images, labels))
        return strategy.reduce(tf.distribute.ReduceOp.MEAN, losses, axis=None)

    writer = tf.summary.create_file_writer(str(run.dir / "logs")) if run.chief else tf.summary.create_noop_writer()
    for epoch in range(start_epoch, config.epochs):
        started = time.perf_counter()
        batches = strategy.experimental_distribute_dataset(
            training_dataset(source, aug, config.batch_size, epoch, config.seed))
        losses = []
        bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{config.epochs}", unit="step",
                   disable=not progress, leave=False)
        try:
            for step, (images, labels) in enumerate(batches):
                loss = float(train_step(images, labels))
                losses.append(loss)
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}")
                with writer.as_default():
                    tf.summary.scalar("loss", loss, step=optimizer.iterations)
                    tf.summary.scalar("learning_rate", schedule(optimizer.iterations), step=optimizer.iterations)
                if step_callback:
                    step_callback(epoch, step, loss)
        except tf.errors.OpError as e:
            raise _data_error(e) from None
        finally:
            bar.close()
        epoch_var.assign(epoch + 1)
        record = {"epoch": epoch + 1, "loss": float(np.mean(losses)), "steps": int(optimizer.iterations.numpy()),
                  "learning_rate": float(schedule(optimizer.iterations)),
                  "seconds": round(time.perf_counter() - started, 2)}
        if val_dataset is not None:
            from edge_deeplab.evaluate import evaluate, keras_predictor

            now = final_model(net, model_cfg, config)
            result = evaluate(keras_predictor(now), val_dataset, class_map=val_class_map,
                              default_class=val_default_class, progress=False)
            record["val_miou"] = result.matrix.miou()
            if run.chief and record["val_miou"] > max((h.get("val_miou", -1.0) for h in history), default=-1.0):
                _save_trained(now, run.best_model(config.qat), config.qat)  # model selection on validation
        history.append(record)
        with writer.as_default():
            for key in ("loss", "val_miou"):
                if key in record:
                    tf.summary.scalar(f"epoch_{key}", record[key], step=epoch + 1)
        # history first, then the checkpoint: killed in between, the resumed run redoes this epoch and
        # drops its record (history is cut at the checkpoint's epoch); the other order would lose it for good
        if run.chief:
            write_json_atomic(run.history_file, history)
        crash_point("train:after-history")
        manager.save(checkpoint_number=epoch + 1)
        if log_epochs:
            tqdm.write(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()),
                       file=sys.stderr)

    trained = final_model(net, model_cfg, config)
    if run.chief:
        _save_trained(trained, output, config.qat)
    return TrainResult(trained, output, history, start_epoch)


def _save_trained(model, path, qat):
    if qat:
        from edge_deeplab.qat import save_qat_model

        save_qat_model(model, path)
    else:
        save_model(model, path)


def _with_class_names(model_cfg: DeepLabConfig, dataset: SegmentationDataset, config: TrainConfig):
    """The dataset's class names travel into the trained model (and from there into .tflite metadata)
    when its classes are the model's; a label map keeps the model's own names."""
    if config.label_map or dataset.num_classes != model_cfg.num_classes:
        return model_cfg
    return model_cfg.replace(class_names=tuple(dataset.class_names))


def recalibrate_batch_norm(model: keras.Model, batches) -> int:
    """Re-estimate every batch norm's moving statistics on ``batches`` of images and rescale its gamma and
    beta so that the model computes the same function in inference mode (and nearly so in training mode,
    whose batch statistics are then close to the moving ones). Returns the number of batch norms.

    A batch norm computes a * x + c (a = gamma / sqrt(var + eps), c = beta - a * mean); with the measured
    mean m and variance v of its input, gamma' = a * sqrt(v + eps) and beta' = c + a * m give the same.
    """
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    if not norms:
        return 0
    probe = keras.Model(model.inputs, [layer.input for layer in norms])
    sums = [np.zeros(layer.input.shape[-1]) for layer in norms]
    squares = [np.zeros(layer.input.shape[-1]) for layer in norms]
    counts = np.zeros(len(norms))  # values per channel: batch x height x width, per layer
    for images in batches:
        for i, x in enumerate(probe(images, training=False)):
            x = tf.reshape(tf.cast(x, tf.float64), [-1, x.shape[-1]])
            sums[i] += tf.reduce_sum(x, 0).numpy()
            squares[i] += tf.reduce_sum(x * x, 0).numpy()
            counts[i] += int(x.shape[0])
    if not counts.all():
        raise UserError("no training batch to re-estimate batch norm on")
    for layer, total, square, count in zip(norms, sums, squares, counts):
        gamma, beta, mean, var = (w.astype(np.float64) for w in layer.get_weights())
        scale = gamma / np.sqrt(var + layer.epsilon)
        new_mean = total / count
        new_var = np.maximum(square / count - new_mean ** 2, 0.0)
        layer.set_weights([w.astype(np.float32) for w in (scale * np.sqrt(new_var + layer.epsilon),
                                                         beta - scale * mean + scale * new_mean,
                                                         new_mean, new_var)])
    return len(norms)


def _start_quantization(net, float_net, config: TrainConfig, source, aug):
    """The ranges a fresh QAT run starts from: calibrated on the first training batches and, with
    ``quantization_from``, those of the official model the float weights were imported from wherever it
    has them (lossless for those weights, and near it after a float fine-tuning; a new classifier keeps
    its calibrated ones)."""
    from edge_deeplab.qat import apply_source_quantization, calibrate_ranges

    calibration = training_dataset(source, aug, config.batch_size, epoch=0, seed=config.seed)
    calibrate_ranges(net, float_net, (images for images, _ in calibration.take(CALIBRATION_BATCHES)))
    if config.quantization_from:
        from edge_deeplab.importer import read_quantization

        quantization = read_quantization(float_net, config.quantization_from)
        apply_source_quantization(net, quantization, keep_others=True)


def final_model(net: keras.Model, config: DeepLabConfig, train_config: TrainConfig) -> keras.Model:
    """The trained weights of ``net`` in a batch-1 model of ``config`` (QAT-wrapped for QAT runs)."""
    model = build_deeplab(config)
    if train_config.qat:
        from edge_deeplab.qat import quantize_deeplab

        model = quantize_deeplab(model)
    if train_config.freeze_bn:
        _freeze_batch_norm(model)  # the same trainable split as ``net``, so that the weight lists line up
    model.set_weights(net.get_weights())
    for layer in model.layers:
        layer.trainable = True
    model.deeplab_config = config
    return model


def _data_error(error: tf.errors.OpError) -> Exception:
    """A bad sample surfaces as a TensorFlow error from the input pipeline: give back its one-line message."""
    found = re.search(r"UserError: (.+)", error.message)
    return UserError(found.group(1).strip()) if found else error
