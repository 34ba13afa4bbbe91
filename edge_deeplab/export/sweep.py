"""Sweeps: build (or import) the variants a spec names, convert them, measure latency and mIOU.

A spec crosses output stride x decoder x quantization x input size over one source of weights:

    {"source": "../shared/models/official/deeplabv3_257_mv_gpu.tflite",   (imported), or a .keras model,
     "decoder_source": "runs/decoder/model.keras",  (optional) fine-tuned model with the decoder
     "qat_source": "runs/qat/model_qat.h5",  "decoder_qat_source": ...   (optional) their QAT models
     "os": [8, 16, 32], "decoder": [0, 1], "quant": ["fp32", "fp16", "int8", "int8_qat"], "size": [257, 513],
     "calibration": "data/images", "calibration_images": 64}     (int8 representative images)

``int8`` is post-training full-integer quantization of the float model (calibrated on the images),
``int8_qat`` the full-integer conversion of its quantization-aware trained model (no calibration).

or inline: ``source=deeplabv3_257_mv_gpu.tflite;os=8,16;decoder=0;quant=fp32,int8;size=257``.
A JSON spec may instead list ``"grids": [{"os": [8, 16], "quant": ["fp32"]}, {"decoder": [1], ...}]``:
the union of several crosses, each grid's keys overriding the top level's.
``source`` may also be ``preset:NAME``, as ``edge-deeplab convert NAME``: the preset's official weights
where it has them (imported from its official .tflite), else its architecture with untrained weights,
whose latency is real and whose mIOU is not measured. A decoder variant whose weights come from a model
without a decoder gets an untrained decoder: latency only, noted in the results.

Everything lives in a work directory: ``models/<variant>.tflite`` and ``sweep.json``, the cache,
rewritten atomically after every step. A rerun skips every variant already converted and every mIOU
already measured (keyed by the dataset), so an interrupted sweep resumes where it stopped. Latency
is measured last, all variants and baselines together and interleaved, and cached under the exact
set of models and settings. Building and converting import TensorFlow; measuring does not.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import sys
from pathlib import Path

from edge_deeplab.bench.accuracy import measure_miou
from edge_deeplab.bench.record import BenchResult
from edge_deeplab.choices import SWEEP_QUANTIZATIONS
from edge_deeplab.errors import DataError, ModelFileError, OptionError, UserError
from edge_deeplab.io_utils import write_json_atomic

LIST_KEYS = ("os", "decoder", "quant", "size")
CACHE_FILE = "sweep.json"
CACHE_VERSION = 1


@dataclasses.dataclass(frozen=True)
class Variant:
    output_stride: int
    decoder: bool
    quant: str
    size: tuple  # (height, width)

    @property
    def key(self) -> str:
        h, w = self.size
        size = f"{h}" if h == w else f"{h}x{w}"
        return f"os{self.output_stride}_{'dec' if self.decoder else 'nodec'}_{self.quant}_{size}"

    def fields(self) -> dict:
        h, w = self.size
        return {"os": self.output_stride, "decoder": int(self.decoder), "quant": self.quant,
                "size": h if h == w else f"{h}x{w}"}


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    source: str
    os: tuple = (16,)
    decoder: tuple = (False,)
    quant: tuple = ("fp32",)
    size: tuple = ()  # (h, w) pairs; empty: the source's own input size
    grids: tuple = ()  # more crosses of os/decoder/quant/size (dicts of tuples); the variants are their union
    decoder_source: str | None = None
    qat_source: str | None = None  # the quantization-aware trained (.h5) model of source, for int8_qat
    decoder_qat_source: str | None = None  # ... and of decoder_source
    calibration: str | None = None  # folder of images for int8 calibration (default: the --data images)
    calibration_images: int = 64
    base_dir: str = "."  # relative paths in a spec file are relative to the file

    def path(self, value) -> Path | None:
        if value is None:
            return None
        p = Path(value).expanduser()
        return p if p.is_absolute() else Path(self.base_dir) / p

    def variants(self, default_size) -> list[Variant]:
        """Every variant of the spec's cross (or of each of its grids), in order, each once."""
        variants = []
        for grid in self.grids or ({},):
            pick = lambda key: grid.get(key) or getattr(self, key)  # noqa: E731 - a grid overrides the top level
            sizes = pick("size") or (tuple(default_size),)
            for d, o, s, q in itertools.product(pick("decoder"), pick("os"), sizes, pick("quant")):
                if Variant(o, d, q, s) not in variants:
                    variants.append(Variant(o, d, q, s))
        return variants


# ------------------------------------------------------------------------------------------- parsing
def parse_spec(text: str) -> SweepSpec:
    """A SweepSpec from a JSON file's path or an inline ``key=v1,v2;key=v`` string."""
    text = str(text).strip()
    if text.endswith(".json") or (Path(text).is_file() and "=" not in text):
        path = Path(text)
        try:
            raw = json.loads(path.read_text())
        except OSError as e:
            raise DataError(f"{path}: cannot read the sweep spec ({e.strerror or e})") from None
        except ValueError as e:
            raise DataError(f"{path}: not valid JSON ({e})") from None
        if not isinstance(raw, dict):
            raise DataError(f"{path}: a sweep spec is a JSON object")
        return _spec_from_dict(raw, str(path), base_dir=str(path.parent))
    raw = {}
    for item in filter(None, (part.strip() for part in text.split(";"))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise DataError(f"sweep spec: expected key=value items separated by ';', got {item!r}")
        values = [v.strip() for v in value.split(",")]
        raw[key.strip()] = values if key.strip() in LIST_KEYS else value.strip()
    return _spec_from_dict(raw, "sweep spec")


def _spec_from_dict(raw: dict, where: str, base_dir=".") -> SweepSpec:
    known = {f.name for f in dataclasses.fields(SweepSpec)} - {"base_dir"}
    unknown = sorted(set(raw) - known - {"_comment", "name"})
    if unknown:
        raise OptionError(f"{where}: unknown key(s) {', '.join(unknown)}; expected {', '.join(sorted(known))}")
    if not raw.get("source"):
        raise OptionError(f"{where}: 'source' is required (an official .tflite to import, a .keras model, "
                        "or preset:NAME)")

    def listed(source, key, convert, allowed=None):
        values = source.get(key)
        if values is None:
            return None
        values = values if isinstance(values, list) else [values]
        try:
            out = tuple(convert(v) for v in values)
        except (TypeError, ValueError):
            raise OptionError(f"{where}: bad {key} value in {values!r}") from None
        if not out or (allowed and any(v not in allowed for v in out)):
            raise OptionError(f"{where}: {key} must be among {', '.join(map(str, allowed))}; got {values!r}")
        if len(set(out)) != len(out):
            raise OptionError(f"{where}: {key} lists a value twice: {values!r}")
        return out

    def size(v):
        parts = [int(p) for p in str(v).lower().split("x")]
        if len(parts) not in (1, 2) or min(parts) < 32:
            raise ValueError(v)
        return (parts[0], parts[-1])

    def flag(v):
        text = str(v).lower()
        if text not in ("0", "1", "true", "false", "on", "off"):
            raise ValueError(v)
        return text in ("1", "true", "on")

    def cross(source):
        fields = {"os": listed(source, "os", int, (8, 16, 32)), "decoder": listed(source, "decoder", flag),
                  "quant": listed(source, "quant", str, SWEEP_QUANTIZATIONS), "size": listed(source, "size", size)}
        return {k: v for k, v in fields.items() if v is not None}

    fields = cross(raw)
    grids = raw.get("grids") or []
    if not isinstance(grids, list) or not all(isinstance(g, dict) and set(g) <= set(LIST_KEYS) for g in grids):
        raise OptionError(f"{where}: 'grids' must be a list of objects with keys among {', '.join(LIST_KEYS)}")
    if grids:
        fields["grids"] = tuple(cross(g) for g in grids)
    extra = {k: raw[k] for k in ("decoder_source", "qat_source", "decoder_qat_source", "calibration") if raw.get(k)}
    if "calibration_images" in raw:
        extra["calibration_images"] = int(raw["calibration_images"])
    return SweepSpec(source=str(raw["source"]), base_dir=base_dir, **fields, **extra)


# --------------------------------------------------------------------------------------------- cache
class SweepCache:
    """sweep.json in the work directory, written atomically after every change."""

    def __init__(self, work_dir):
        self.dir = Path(work_dir)
        self.path = self.dir / CACHE_FILE
        self.data = {"version": CACHE_VERSION, "variants": {}, "accuracy": {}, "latency": {}}
        if self.path.is_file():
            try:
                data = json.loads(self.path.read_text())
            except ValueError as e:
                raise DataError(f"{self.path}: damaged sweep cache ({e}); delete it to start over") from None
            if data.get("version") == CACHE_VERSION:
                self.data = data

    def variant(self, key: str, source_id: str) -> dict | None:
        """The cached conversion of a variant, if it is there intact: the .tflite its report describes
        (a damaged or half-written file is converted again)."""
        from edge_deeplab.tflite.report import read_report

        entry = self.data["variants"].get(key)
        if not entry or entry.get("source_id") != source_id:
            return None
        try:
            read_report(self.dir / entry["tflite"])
        except UserError:
            return None
        return entry

    def put_variant(self, key: str, entry: dict):
        self.data["variants"][key] = entry
        self.save()

    def save(self):
        write_json_atomic(self.path, self.data)


def fingerprint(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def file_id(path) -> str:
    stat = Path(path).stat()
    return f"{Path(path).resolve()}:{stat.st_size}:{int(stat.st_mtime)}"


# ------------------------------------------------------------------------------------ build, convert
class Sources:
    """The Keras models that variants are derived from, loaded once, on first use (imports TensorFlow)."""

    def __init__(self, spec: SweepSpec):
        self.spec = spec
        self._models = {}

    def source_name(self, variant: Variant) -> str:
        """The spec's model a variant is derived from (QAT variants: the QAT model of the float one)."""
        decoder = variant.decoder and self.spec.decoder_source
        if variant.quant == "int8_qat":
            name = self.spec.decoder_qat_source if decoder else self.spec.qat_source
            if not name:
                raise OptionError(f"{variant.key}: int8_qat variants need the QAT model of their source in the spec "
                                f"({'decoder_qat_source' if decoder else 'qat_source'})")
            return name
        return self.spec.decoder_source if decoder else self.spec.source

    def source_id(self, variant: Variant) -> str:
        name = self.source_name(variant)
        p = self.spec.path(name) if not name.startswith("preset:") else None
        return f"{name}|{file_id(p)}" if p and p.is_file() else name

    def default_size(self):
        if self.spec.source.startswith("preset:"):
            from edge_deeplab.presets import get_preset

            return get_preset(self.spec.source.split(":", 1)[1])["config"].input_size
        if self.spec.source.endswith(".tflite"):
            from edge_deeplab.model.importer import read_official_tflite

            return read_official_tflite(self.spec.path(self.spec.source)).config.input_size
        return self.load(self.spec.source)[0].deeplab_config.input_size

    def load(self, name):
        """(model, trained) for a source name."""
        if name not in self._models:
            if name.startswith("preset:"):
                from edge_deeplab.export.convert import preset_model

                self._models[name] = preset_model(name.split(":", 1)[1])
            else:
                path = self.spec.path(name)
                if not path.is_file():
                    raise ModelFileError(f"{path}: sweep source not found")
                if path.suffix == ".tflite":
                    from edge_deeplab.model.importer import import_tflite

                    self._models[name] = (import_tflite(path)[0], True)
                else:
                    from edge_deeplab.model.deeplab import model_config
                    from edge_deeplab.train.qat import load_any_model

                    model = load_any_model(path)  # float .keras, or a QAT .h5
                    model_config(model)  # a DeepLab model built by this project, or a clear error
                    self._models[name] = (model, True)
        return self._models[name]

    def model_for(self, variant: Variant):
        """(Keras model of the variant, note); the note says what is untrained (latency only)."""
        from edge_deeplab.model.deeplab import (
            adapt,
            is_qat_model,
            model_config,
            rebuild,
        )

        base, trained = self.load(self.source_name(variant))
        config = model_config(base)
        if variant.quant == "int8_qat":
            from edge_deeplab.train.qat import rebuild_qat

            if not is_qat_model(base) or config.decoder != variant.decoder:
                raise ModelFileError(f"{self.source_name(variant)}: not the QAT model of a "
                                f"{'decoder' if variant.decoder else 'no-decoder'} variant")
            return rebuild_qat(base, output_stride=variant.output_stride, input_size=variant.size), ""
        if config.decoder == variant.decoder:
            model = rebuild(base, output_stride=variant.output_stride, input_size=variant.size)
            note = "" if trained else "untrained weights: latency only"
        else:
            model, missing = adapt(base, decoder=variant.decoder, output_stride=variant.output_stride,
                                   input_size=variant.size, name="")
            part = "decoder" if variant.decoder else "layers"
            note = f"untrained {part} ({len(missing)} layers): latency only" if missing else ""
        return model, note


def convert_variant(model, path: Path, quant: str, calibration: Path | None, calibration_images: int):
    """Convert a Keras model to ``path`` (logits head, metadata) at the variant's quantization."""
    from edge_deeplab.export.convert import convert

    quantize = "int8" if quant == "int8_qat" else quant  # a QAT model converts as int8 with its own ranges
    extra = dict(calibration=str(calibration), num_calibration=calibration_images) if quant == "int8" else {}
    convert(model, path, quantize=quantize, progress=False, **extra)


def calibration_folder(spec: SweepSpec, data=None) -> Path:
    """The folder of int8 calibration images: the spec's, else the folder of the --data images."""
    if spec.calibration:
        return spec.path(spec.calibration)
    if data is None:
        raise OptionError("int8 variants need calibration images: give 'calibration' in the spec or --data")
    from edge_deeplab.data.datasets import open_dataset

    return Path(open_dataset(data.root, data.format).pairs[0][0]).parent


# ------------------------------------------------------------------------------------------ the sweep
def build_variants(spec: SweepSpec, work_dir, data=None, progress=True) -> list[tuple[Variant, dict]]:
    """Convert every variant not yet in the cache; returns (variant, cache entry) in spec order."""
    cache = SweepCache(work_dir)
    sources = Sources(spec)
    variants = spec.variants(sources.default_size())
    done = []
    for i, variant in enumerate(variants, 1):
        source_id = sources.source_id(variant)
        entry = cache.variant(variant.key, source_id)
        if entry is None:
            if progress:
                print(f"[{i}/{len(variants)}] building and converting {variant.key}", file=sys.stderr)
            model, note = sources.model_for(variant)
            tflite = Path("models") / f"{variant.key}.tflite"
            calibration = calibration_folder(spec, data) if variant.quant == "int8" else None
            convert_variant(model, cache.dir / tflite, variant.quant, calibration, spec.calibration_images)
            entry = {"variant": variant.fields(), "source_id": source_id, "tflite": str(tflite), "note": note}
            cache.put_variant(variant.key, entry)
        elif progress:
            print(f"[{i}/{len(variants)}] {variant.key}: converted before", file=sys.stderr)
        done.append((variant, entry))
    return done


def run_sweep(spec: SweepSpec, work_dir, models=(), baselines=(), device="host", threads=None,
              delegate="xnnpack", runs=30, warmup=5, data=None, binary=None, android_args=(), memory=True,
              progress=True) -> list[BenchResult]:
    """Build and convert the variants, then measure all of them beside ``models`` and ``baselines``.

    Returns the results of the baselines, the models and the variants (with their variant fields and
    notes), as ``benchmark`` returns them.
    """
    from edge_deeplab.bench.run import benchmark

    work_dir = Path(work_dir)
    built = build_variants(spec, work_dir, data=data, progress=progress)
    cache = SweepCache(work_dir)
    variant_of = {str(work_dir / e["tflite"]): (v, e) for v, e in built}
    all_paths = [*map(str, baselines), *map(str, models), *variant_of]

    scores = {}
    if data is not None:  # before latency, so that an interruption there keeps them
        for path in all_paths:
            if path not in variant_of or not variant_of[path][1]["note"]:
                scores[path] = _cached_miou(cache, path, data, threads, progress)

    settings = dict(device=device, threads=threads, delegate=delegate, runs=runs, warmup=warmup,
                    memory=memory, android_args=list(android_args))
    latency_id = fingerprint(settings, [file_id(p) for p in all_paths])
    cached = cache.data["latency"].get(latency_id)
    if cached:
        if progress:
            print("latency: measured before with the same models and settings", file=sys.stderr)
        results = [BenchResult.from_dict(d) for d in cached]
    else:
        results = benchmark([*models, *variant_of], device=device, threads=threads, delegate=delegate, runs=runs,
                            warmup=warmup, baselines=baselines, binary=binary, android_args=android_args,
                            memory=memory, progress=progress)
        cache.data["latency"] = {latency_id: [r.to_dict() for r in results]}  # only the latest set
        cache.save()

    for r in results:
        if r.path in variant_of:
            variant, entry = variant_of[r.path]
            r.model, r.variant, r.note = variant.key, entry["variant"], entry["note"]
        if r.path in scores:
            r.miou, r.iou, r.eval_images = scores[r.path]["miou"], scores[r.path]["iou"], scores[r.path]["images"]
    return results


def _cached_miou(cache: SweepCache, path, data, threads, progress) -> dict:
    """mIOU of the model at ``path`` on ``data``, measured once per (file, dataset settings)."""
    from edge_deeplab.runtime.interpreter import default_num_threads

    key = fingerprint(file_id(path), dataclasses.asdict(data))
    accuracy = cache.data.setdefault("accuracy", {})
    if key not in accuracy:
        if progress:
            print(f"mIOU of {Path(path).name} on {data.describe()}", file=sys.stderr)
        accuracy[key] = measure_miou(path, data.root, data.format, threads=max(threads or [default_num_threads()]),
                                     class_map=data.class_map, default_class=data.default_class,
                                     max_images=data.max_images, subset=data.subset, progress=progress)
        cache.save()
    return accuracy[key]
