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
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
import tf_keras as keras
from tqdm import tqdm

from edge_deeplab.choices import OPTIMIZERS, check_choice
from edge_deeplab.config import DeepLabConfig
from edge_deeplab.data.datasets import IGNORE_LABEL, UNLABELLED, SegmentationDataset, class_weights
from edge_deeplab import errors
from edge_deeplab.errors import DataError, ModelFileError, OptionError, UserError
from edge_deeplab.io_utils import crash_point, write_json_atomic
from edge_deeplab.model.deeplab import build_deeplab, model_config, save_model
from edge_deeplab.train.distribute import (
    broadcast_from_first_replica,
    cluster_min,
    is_chief,
    make_strategy,
    weights_fingerprint,
    worker_name,
)
from edge_deeplab.train.pipeline import (
    Augment,
    SampleSource,
    per_replica_batch,
    training_dataset,
    unlabelled_images,
)

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
    # knowledge distillation (distill.py): the teacher model, the weight of its term, the temperature,
    # its classes -> the student's, the output stride a Keras teacher runs at (e.g. 8: the student's own
    # weights at OS 8 teach it at OS 16), and folders of images without labels (distillation only)
    distill: str | None = None
    distill_output_stride: int | None = None
    distill_weight: float = 0.5
    distill_temperature: float = 2.0
    distill_class_map: dict = dataclasses.field(default_factory=dict)
    distill_default_class: int = 0
    unlabelled: tuple = ()

    def __post_init__(self):
        if self.crop_size is not None:
            size = (self.crop_size, self.crop_size) if isinstance(self.crop_size, int) else self.crop_size
            object.__setattr__(self, "crop_size", tuple(int(s) for s in size))
        object.__setattr__(self, "label_map", {int(k): int(v) for k, v in (self.label_map or {}).items()})
        object.__setattr__(self, "distill_class_map",
                           {int(k): int(v) for k, v in (self.distill_class_map or {}).items()})
        object.__setattr__(self, "unlabelled", tuple(str(f) for f in self.unlabelled))
        self._check_distillation()
        if self.epochs < 1 or self.batch_size < 1:
            raise OptionError(f"epochs and batch size must be at least 1 (got {self.epochs}, {self.batch_size})")
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        if not 0 < self.min_scale <= self.max_scale:
            raise OptionError(f"scale range must satisfy 0 < min <= max, got {self.min_scale}..{self.max_scale}")
        if self.quantization_from is not None:
            if not self.qat:
                raise OptionError("--quantization-from goes with --qat")
            if not Path(self.quantization_from).is_file():
                raise ModelFileError(f"{self.quantization_from}: model file not found")

    def _check_distillation(self):
        if self.distill is None:
            if self.unlabelled or self.distill_class_map or self.distill_output_stride:
                raise OptionError("--unlabelled, --distill-class-map and --distill-output-stride go with "
                                  "--distill TEACHER")
            return
        if not 0 < self.distill_weight <= 1 or self.distill_temperature <= 0:
            raise OptionError(f"--distill-weight must be in (0, 1] and --distill-temperature above 0 (got "
                              f"{self.distill_weight}, {self.distill_temperature})")

    def to_dict(self):
        d = dataclasses.asdict(self)
        d["distill_class_map"] = {str(k): v for k, v in self.distill_class_map.items()}
        d["unlabelled"] = list(self.unlabelled)
        d["crop_size"] = list(self.crop_size) if self.crop_size else None
        d["label_map"] = {str(k): v for k, v in self.label_map.items()}
        if self.distill_output_stride is None:  # unset: as recorded by runs made before the option (they resume)
            del d["distill_output_stride"]
        return d


@dataclasses.dataclass
class TrainResult:
    model: keras.Model  # the trained model at the original input size, batch 1 (QAT-wrapped with qat=True)
    output: Path | None  # where the model was saved (None on a worker that is not the chief: it saves nothing)
    history: list
    resumed_at_epoch: int  # 0 for a fresh run
    fingerprint: str = ""  # of the trained weights: the same on every worker of a multi-worker run
    worker: str = ""  # "worker 1 of 2" in a multi-worker run


def variant(model: keras.Model, config: DeepLabConfig, free_batch=False) -> keras.Model:
    """``model``'s weights in a float model built from ``config`` (another size or output stride).

    ``free_batch``: a batch dimension of any size, for training (the builder fixes it at 1).
    """
    new = build_deeplab(config, batch_size=None if free_batch else 1)
    new.set_weights(model.get_weights())
    new.deeplab_config = config
    return new


def segmentation_loss(labels, logits, class_weights=None):
    """Mean softmax cross entropy over the pixels that are not ignore; with ``class_weights`` (one per
    class) each pixel counts with its class's weight and the mean is over the weights (so a weighting
    changes the balance between classes, not the scale of the loss)."""
    valid = tf.logical_and(tf.not_equal(labels, IGNORE_LABEL), tf.not_equal(labels, UNLABELLED))
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


class Run:
    """The files of a run directory. Only the chief writes them; another worker of a cluster keeps its own
    checkpoints (each worker resumes from its own) in a hidden folder it removes when the run ends, as
    TensorFlow's multi-worker pattern has every worker save and keeps the chief's."""

    def __init__(self, run_dir, strategy):
        self.dir = Path(run_dir)
        self.chief = is_chief(strategy)
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
                raise OptionError(f"{self.dir} holds a run with other settings ({', '.join(changed)} differ); "
                                "use another --run-dir or the same settings to resume it")
        if self.chief:
            write_json_atomic(self.settings, settings)

    def best_model(self, qat: bool) -> Path:
        """The model of the epoch with the best validation mIOU so far (model selection)."""
        return self.dir / ("best_qat.h5" if qat else "best.keras")

    def history(self) -> list:
        return json.loads(self.history_file.read_text()) if self.history_file.exists() else []

    def finish(self):
        """A worker's own checkpoints go once the run is complete (the chief's stay with the run)."""
        if not self.chief:
            shutil.rmtree(self.checkpoints, ignore_errors=True)


@dataclasses.dataclass
class _Training:
    """What a run trains and saves: the network at the crop size, its optimizer and the checkpoint."""
    net: keras.Model
    float_net: keras.Model  # the float network under ``net`` (``net`` itself, but for QAT)
    schedule: keras.optimizers.schedules.LearningRateSchedule
    optimizer: keras.optimizers.Optimizer
    epoch: tf.Variable  # epochs completed, checkpointed with the weights
    manager: tf.train.CheckpointManager


def train(model: keras.Model, dataset: SegmentationDataset, run_dir, config: TrainConfig = TrainConfig(),
          output=None, val_dataset: SegmentationDataset | None = None, val_class_map=None, val_default_class=None,
          strategy: str | tf.distribute.Strategy = "default", step_callback=None, progress=True,
          log_epochs=True) -> TrainResult:
    """Train ``model`` (float; with ``config.qat`` a float model to fine-tune quantization-aware) on
    ``dataset``; resume from ``run_dir`` when it holds checkpoints of the same run.

    ``config.batch_size`` is the global batch, split across the replicas of ``strategy`` (see distribute.py).
    ``progress`` shows a progress bar per epoch, ``log_epochs`` a line after each (on stderr).
    ``val_dataset`` is evaluated (mIOU) after every epoch, predictions mapped to its classes by
    ``val_class_map`` ({model class: dataset class}) and ``val_default_class``.
    ``step_callback(epoch, step, loss)`` runs after every step.
    Returns the trained model at the model's own input size and output stride, saved to ``output``
    (default ``run_dir/model.keras``; QAT models: ``run_dir/model_qat.h5``, see qat.py) by the chief.
    """
    strategy = make_strategy(strategy) if isinstance(strategy, str) else strategy
    run = Run(run_dir, strategy)
    output = Path(output) if output else run.dir / ("model_qat.h5" if config.qat else "model.keras")
    if output.suffix != (".h5" if config.qat else ".keras"):
        raise OptionError(f"{output}: {'QAT models are saved as .h5' if config.qat else 'models are saved as .keras'}")
    model_cfg = _with_class_names(model_config(model), dataset, config)
    crop = config.crop_size or model_cfg.input_size
    source = SampleSource(dataset, model_cfg.num_classes, config.label_map, cache=config.cache,
                          unlabelled=unlabelled_images(config.unlabelled), unlabelled_label=UNLABELLED)
    weights = class_weights(config.class_weights, dataset, model_cfg.num_classes, config.label_map)
    run.check_settings({"train": config.to_dict(), "model": model_cfg.to_dict(), "dataset": dataset.name,
                        "samples": len(dataset.pairs), "unlabelled_images": len(source.pairs) - len(dataset.pairs),
                        "class_weights": None if weights is None else [round(float(w), 6) for w in weights]})
    per_replica_batch(config.batch_size, strategy.num_replicas_in_sync)  # the global batch splits evenly
    steps_per_epoch = len(source) // config.batch_size
    aug = Augment(crop, config.max_resize, config.min_scale, config.max_scale, config.flip)
    train_cfg = model_cfg.replace(input_size=crop, output_stride=config.output_stride or model_cfg.output_stride)
    t = _set_up(model, train_cfg, config, config.epochs * steps_per_epoch, strategy, run)
    start_epoch = _resume(t, strategy)
    try:  # both read training batches: a bad sample surfaces here first
        _starting_weights(t, config, source, aug, resumed=start_epoch > 0)
    except tf.errors.OpError as e:
        raise _data_error(e) from None
    broadcast_from_first_replica(strategy, t.net.weights)  # every worker starts from the chief's weights
    history = run.history()[:start_epoch]
    train_step = _train_step(t, strategy, config, weights, _teacher(config, crop, model_cfg.num_classes, strategy))
    writer = tf.summary.create_file_writer(str(run.dir / "logs")) if run.chief else tf.summary.create_noop_writer()
    for epoch in range(start_epoch, config.epochs):
        started = time.perf_counter()
        batches = strategy.distribute_datasets_from_function(
            lambda context, e=epoch: training_dataset(source, aug, config.batch_size, e, config.seed, context))
        losses = _run_epoch(t, train_step, batches, epoch, config.epochs, steps_per_epoch, writer, step_callback,
                            progress)
        t.epoch.assign(epoch + 1)
        record = {"epoch": epoch + 1, "loss": float(np.mean(losses)), "steps": int(t.optimizer.iterations.numpy()),
                  "learning_rate": float(t.schedule(t.optimizer.iterations)),
                  "seconds": round(time.perf_counter() - started, 2)}
        if val_dataset is not None and run.chief:  # validation and model selection: the chief's job
            now = final_model(t.net, model_cfg, config)
            record["val_miou"] = _validate(now, val_dataset, val_class_map, val_default_class)
            if record["val_miou"] > max((h.get("val_miou", -1.0) for h in history), default=-1.0):
                _save_trained(now, run.best_model(config.qat), config.qat)
        history.append(record)
        _end_epoch(t, run, history, record, writer, log_epochs)
    trained = final_model(t.net, model_cfg, config)
    if run.chief:
        _save_trained(trained, output, config.qat)
    run.finish()
    return TrainResult(trained, output if run.chief else None, history, start_epoch,
                       weights_fingerprint(trained.get_weights()), worker_name(strategy))


def _set_up(model, train_cfg, config: TrainConfig, total_steps, strategy, run: Run) -> _Training:
    """The network at the training crop size (QAT-wrapped for QAT), its optimizer and checkpoint, built
    in the strategy's scope."""
    with strategy.scope():
        net = float_net = variant(model, train_cfg, free_batch=True)
        if config.qat:
            from edge_deeplab.train.qat import quantize_deeplab

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
        epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        checkpoint = tf.train.Checkpoint(model=net, optimizer=optimizer, epoch=epoch)
    manager = tf.train.CheckpointManager(checkpoint, str(run.checkpoints), max_to_keep=2)
    return _Training(net, float_net, schedule, optimizer, epoch, manager)


def _resume(t: _Training, strategy) -> int:
    """Restore the last checkpoint; returns the epochs it holds. The workers of a cluster resume from the
    same epoch: the earliest of theirs (one killed between two workers' saves is an epoch behind, and
    every worker keeps its previous checkpoint too)."""
    latest = t.manager.latest_checkpoint
    epoch = int(latest.rsplit("-", 1)[1]) if latest else 0
    agreed = cluster_min(strategy, epoch)
    if agreed < epoch:
        wanted = [c for c in t.manager.checkpoints if c.endswith(f"-{agreed}")]
        if agreed == 0 or not wanted:
            raise UserError(f"{t.manager.directory}: this worker is at epoch {epoch} and another at {agreed}; "
                            "the workers have no checkpoint in common (start them with the same run folders)")
        latest = wanted[0]
    if latest:
        t.manager.checkpoint.restore(latest).assert_existing_objects_matched()
    return int(t.epoch.numpy())


def _starting_weights(t: _Training, config: TrainConfig, source, aug, resumed: bool):
    """What a fresh run does to the weights before its first step: QAT's starting ranges, or re-estimated
    batch-norm statistics for trainable batch norm; and QAT with an official quantization keeps its
    weight grids fixed."""
    if config.qat and not resumed:
        _start_quantization(t.net, t.float_net, config, source, aug)
    elif not (config.qat or config.freeze_bn or resumed) and config.recalibrate_bn:
        batches = training_dataset(source, aug, config.batch_size, epoch=0, seed=config.seed)
        recalibrate_batch_norm(t.net, (images for images, _ in batches.take(BN_RECALIBRATION_BATCHES)))
    if config.quantization_from:
        from edge_deeplab.train.qat import freeze_weight_ranges

        freeze_weight_ranges(t.net)


def _teacher(config: TrainConfig, crop, num_classes, strategy):
    """(teacher, class matrix) for distillation, or None."""
    if config.distill is None:
        return None
    from edge_deeplab.train.distill import class_matrix, load_teacher

    with strategy.scope():
        teacher = load_teacher(config.distill, crop, config.distill_output_stride)
    return teacher, class_matrix(teacher.num_classes, num_classes, config.distill_class_map,
                                 config.distill_default_class)


def _train_step(t: _Training, strategy, config: TrainConfig, class_weights_, teacher=None):
    """One synchronous step over the global batch: each replica's loss is scaled by the replica count,
    so the summed gradients are those of the global batch's mean loss. With a ``teacher`` the loss mixes
    in its distillation term (distill.py)."""
    decayed = _decayed_variables(t.net)
    replicas = strategy.num_replicas_in_sync

    def objective(images, labels, logits):
        loss = segmentation_loss(labels, logits, class_weights_)
        if teacher is None:
            return loss
        from edge_deeplab.train.distill import distillation_loss

        model, matrix = teacher
        soft = distillation_loss(labels, logits, model.logits(images), matrix, config.distill_temperature)
        return (1 - config.distill_weight) * loss + config.distill_weight * soft

    def replica_step(images, labels):
        with tf.GradientTape() as tape:
            loss = objective(images, labels, t.net(images, training=True))
            l2 = tf.add_n([tf.nn.l2_loss(v) for v in decayed]) if decayed else 0.0
            total = (loss + config.weight_decay * l2) / replicas
        grads = tape.gradient(total, t.net.trainable_variables)
        t.optimizer.apply_gradients(zip(grads, t.net.trainable_variables))
        return loss

    @tf.function
    def train_step(images, labels):
        losses = strategy.run(replica_step, args=(images, labels))
        return strategy.reduce(tf.distribute.ReduceOp.MEAN, losses, axis=None)

    return train_step


def _run_epoch(t: _Training, train_step, batches, epoch, epochs, steps, writer, step_callback, progress) -> list:
    """The steps of one epoch, with a progress bar and TensorBoard scalars; returns the losses."""
    losses = []
    bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{epochs}", unit="step", disable=not progress, leave=False)
    try:
        for step, (images, labels) in enumerate(batches):
            loss = float(train_step(images, labels))
            losses.append(loss)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}")
            with writer.as_default():
                tf.summary.scalar("loss", loss, step=t.optimizer.iterations)
                tf.summary.scalar("learning_rate", t.schedule(t.optimizer.iterations), step=t.optimizer.iterations)
            if step_callback:
                step_callback(epoch, step, loss)
            crash_point("train:step")
    except tf.errors.OpError as e:
        raise _data_error(e) from None
    finally:
        bar.close()
    return losses


def _validate(model, val_dataset, class_map, default_class) -> float:
    from edge_deeplab.model.predictor import keras_predictor
    from edge_deeplab.runtime.evaluate import evaluate

    result = evaluate(keras_predictor(model), val_dataset, class_map=class_map, default_class=default_class,
                      progress=False)
    return result.matrix.miou()


def _end_epoch(t: _Training, run: Run, history, record, writer, log_epochs):
    """Record the epoch: TensorBoard, history, then the checkpoint (every worker saves its own)."""
    with writer.as_default():
        for key in ("loss", "val_miou"):
            if key in record:
                tf.summary.scalar(f"epoch_{key}", record[key], step=record["epoch"])
    # history first, then the checkpoint: killed in between, the resumed run redoes this epoch and
    # drops its record (history is cut at the checkpoint's epoch); the other order would lose it for good
    if run.chief:
        write_json_atomic(run.history_file, history)
    crash_point("train:after-history")
    t.manager.save(checkpoint_number=record["epoch"])
    if log_epochs:
        tqdm.write(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()),
                   file=sys.stderr)


def _save_trained(model, path, qat):
    if qat:
        from edge_deeplab.train.qat import save_qat_model

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
        raise DataError("no training batch to re-estimate batch norm on")
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
    from edge_deeplab.train.qat import apply_source_quantization, calibrate_ranges

    calibration = training_dataset(source, aug, config.batch_size, epoch=0, seed=config.seed)
    calibrate_ranges(net, float_net, (images for images, _ in calibration.take(CALIBRATION_BATCHES)))
    if config.quantization_from:
        from edge_deeplab.model.importer import read_quantization

        quantization = read_quantization(float_net, config.quantization_from)
        apply_source_quantization(net, quantization, keep_others=True)


def final_model(net: keras.Model, config: DeepLabConfig, train_config: TrainConfig) -> keras.Model:
    """The trained weights of ``net`` in a batch-1 model of ``config`` (QAT-wrapped for QAT runs)."""
    model = build_deeplab(config)
    if train_config.qat:
        from edge_deeplab.train.qat import quantize_deeplab

        model = quantize_deeplab(model)
    if train_config.freeze_bn:
        _freeze_batch_norm(model)  # the same trainable split as ``net``, so that the weight lists line up
    model.set_weights(net.get_weights())
    for layer in model.layers:
        layer.trainable = True
    model.deeplab_config = config
    return model


def _data_error(error: tf.errors.OpError) -> Exception:
    """A bad sample surfaces as a TensorFlow error from the input pipeline: give back its one-line message.
    A worker of a cluster that stopped surfaces as an aborted collective on the others: say what to do."""
    found = re.search(r"\b(UserError|DataError|ModelFileError|OptionError): (.+)", error.message)
    if found:  # the kind raised inside the pipeline's Python function, with its message
        return getattr(errors, found.group(1))(found.group(2).strip())
    if isinstance(error, (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.AbortedError)):
        lost = re.search(r"/job:(\w+)/replica:\d+/task:(\d+)\s*\nThe tasks have crashed", error.message)
        return UserError(f"{' '.join(lost.groups()) if lost else 'a worker of the cluster'} stopped; start every "
                         "worker again with the same command: each resumes from its last checkpoint")
    return error
