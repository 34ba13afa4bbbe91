"""TFLite model metadata, read and written: normalization, labels, name, MediaPipe segmenter options.

A .tflite file's ``metadata`` list may hold an entry named ``TFLITE_METADATA`` whose buffer is a second
FlatBuffer (metadata_schema.fbs, identifier "M001"), as the TFLite Support / MediaPipe metadata writers
store it; the files it names, such as the label file, are packed into a zip archive appended to the model.
MediaPipe's ImageSegmenter and the TFLite Task Library read it. The official writers cannot be used here
(tflite-support needs protobuf < 4; mediapipe's writer fails to import), and no generated code exists for
metadata_schema.fbs, so the small subset a segmenter needs is written with the ``flatbuffers`` builder
and read by field position. The model itself is read and rebuilt by edge_deeplab.tflite.graph. No TensorFlow.
"""
from __future__ import annotations

import io
import struct
import zipfile
import zlib
from dataclasses import dataclass, field

import flatbuffers
import numpy as np

from edge_deeplab.errors import ModelFileError, OptionError
from edge_deeplab.tflite.graph import metadata_entries, model_object

METADATA_NAME = "TFLITE_METADATA"
LABEL_FILE = "labels.txt"
# Semantic version of metadata_schema.fbs that our fields need: CustomMetadata arrived in 1.5.0.
MIN_PARSER_VERSION = "1.5.0"
MIN_PARSER_VERSION_NO_CUSTOM = "1.0.0"

# Field positions in metadata_schema.fbs (a table's field i is stored at vtable slot 4 + 2 * i).
_MM_NAME, _MM_DESCRIPTION, _MM_SUBGRAPHS, _MM_FILES = 0, 1, 3, 6  # ModelMetadata
_SG_INPUTS, _SG_OUTPUTS, _SG_FILES = 2, 3, 4  # SubGraphMetadata
_TM_PROCESS_UNITS, _TM_FILES = 4, 6  # TensorMetadata
_PU_OPTIONS_TYPE, _PU_OPTIONS = 0, 1  # ProcessUnit (union ProcessUnitOptions)
_NORM_MEAN, _NORM_STD = 0, 1  # NormalizationOptions
_FILE_NAME, _FILE_TYPE = 0, 2  # AssociatedFile
# metadata_schema.fbs enums and union members
_IMAGE_PROPERTIES = 2  # ContentProperties
_RGB, _GRAYSCALE = 1, 2  # ColorSpaceType
_NORMALIZATION_OPTIONS = 1  # ProcessUnitOptions
_TENSOR_AXIS_LABELS, _TENSOR_VALUE_LABELS = 2, 3  # AssociatedFileType
# image_segmenter_metadata_schema.fbs (MediaPipe): ImageSegmenterOptions { activation: byte; }
SEGMENTER_METADATA = "SEGMENTER_METADATA"
_SEGMENTER_IDENTIFIER = b"V001"
ACTIVATIONS = {"none": 0, "sigmoid": 1, "softmax": 2}


# ------------------------------------------------------------------------------------------ reading
@dataclass
class TFLiteMetadata:
    """What a segmentation runtime needs from a model's metadata; None where the metadata says nothing."""

    name: str | None = None
    description: str | None = None
    norm_mean: list[float] | None = None  # per channel (or one value for all), pixel units: (x - mean) / std
    norm_std: list[float] | None = None
    label_file: str | None = None  # name of the label file inside the model's zip
    labels: list[str] | None = None


class _Table:
    """A FlatBuffers table in ``buf`` at ``pos``; fields are read by their index in the schema."""

    def __init__(self, buf: bytes, pos: int):
        self.buf, self.pos = buf, pos
        self.vtable = pos - _unpack("<i", buf, pos)
        self.vtable_size = _unpack("<H", buf, self.vtable)

    def _field(self, index):
        slot = 4 + 2 * index
        if slot >= self.vtable_size:
            return None
        offset = _unpack("<H", self.buf, self.vtable + slot)
        return self.pos + offset if offset else None

    def _target(self, index):
        """Position that an offset field (table, string or vector) points to."""
        pos = self._field(index)
        return None if pos is None else pos + _unpack("<I", self.buf, pos)

    def scalar(self, index, fmt, default=0):
        pos = self._field(index)
        return default if pos is None else _unpack("<" + fmt, self.buf, pos)

    def table(self, index):
        pos = self._target(index)
        return None if pos is None else _Table(self.buf, pos)

    def _vector(self, index, item_size):
        """(start, length) of a vector field; (0, 0) when absent."""
        pos = self._target(index)
        if pos is None:
            return 0, 0
        n = _unpack("<I", self.buf, pos)
        if pos + 4 + n * item_size > len(self.buf):
            raise ValueError("vector runs past the end of the buffer")
        return pos + 4, n

    def byte_vector(self, index):
        start, n = self._vector(index, 1)
        return self.buf[start:start + n]

    def string(self, index):
        return None if self._field(index) is None else bytes(self.byte_vector(index)).decode("utf-8")

    def floats(self, index):
        start, n = self._vector(index, 4)
        return list(struct.unpack_from(f"<{n}f", self.buf, start)) if n else None

    def tables(self, index):
        start, n = self._vector(index, 4)
        return [_Table(self.buf, start + 4 * k + _unpack("<I", self.buf, start + 4 * k)) for k in range(n)]


def _unpack(fmt, buf, pos):
    if pos < 0:
        raise ValueError("negative offset")
    return struct.unpack_from(fmt, buf, pos)[0]


def _root(buf, identifier: bytes | None = None):
    if len(buf) < 8:
        raise ValueError("too short for a FlatBuffer")
    if identifier and bytes(buf[4:8]) != identifier:
        raise ValueError(f"not a FlatBuffer with identifier {identifier.decode()}")
    return _Table(buf, _unpack("<I", buf, 0))


def metadata_buffer(model: bytes) -> bytes | None:
    """The raw ``TFLITE_METADATA`` FlatBuffer of a .tflite model, or None when it has none."""
    try:
        return metadata_entries(model).get(METADATA_NAME)
    except Exception as e:  # a damaged FlatBuffer fails anywhere inside the generated reader
        raise ValueError(f"the model's metadata list is damaged ({type(e).__name__})") from None


def parse_labels(text: str) -> list[str]:
    """One label per line; a blank line ends the list (label files may carry notes after it)."""
    labels = []
    for line in text.splitlines():
        if not line.strip():
            if labels:
                break
            continue
        labels.append(line.strip())
    return labels


def _normalization(tensor):
    for unit in tensor.tables(_TM_PROCESS_UNITS):
        options = unit.table(_PU_OPTIONS)
        if unit.scalar(_PU_OPTIONS_TYPE, "B") == _NORMALIZATION_OPTIONS and options is not None:
            return options.floats(_NORM_MEAN), options.floats(_NORM_STD)
    return None, None


def read_metadata(model: bytes, source="model") -> TFLiteMetadata | None:
    """Metadata of a .tflite model given as bytes, or None when it carries none.

    ``source`` names the model in errors. Raises UserError when the metadata is present but corrupt.
    """
    try:
        raw = metadata_buffer(model)
        if raw is None:
            return None
        meta = _root(raw, b"M001")
        result = TFLiteMetadata(name=meta.string(_MM_NAME), description=meta.string(_MM_DESCRIPTION))
        subgraphs = meta.tables(_MM_SUBGRAPHS)
        label_file = None
        if subgraphs:
            inputs, outputs = subgraphs[0].tables(_SG_INPUTS), subgraphs[0].tables(_SG_OUTPUTS)
            if inputs:
                result.norm_mean, result.norm_std = _normalization(inputs[0])
            label_file = (_first_label_file(outputs[:1], _TM_FILES)
                          or _first_label_file(subgraphs[:1], _SG_FILES))
        label_file = label_file or _first_label_file([meta], _MM_FILES)
    except (ValueError, IndexError, struct.error, UnicodeDecodeError) as e:
        raise ModelFileError(f"{source}: corrupt TFLite metadata ({e})") from None
    if label_file:
        result.label_file = label_file
        result.labels = _read_associated_file(model, label_file, source)
    return result


def _first_label_file(tables, files_field):
    """Name of the first label file (axis labels for logits, value labels for label maps) in ``tables``."""
    for table in tables:
        for f in table.tables(files_field):
            if f.scalar(_FILE_TYPE, "b") in (_TENSOR_AXIS_LABELS, _TENSOR_VALUE_LABELS):
                return f.string(_FILE_NAME)
    return None


def _read_associated_file(model: bytes, name: str, source) -> list[str]:
    try:
        with zipfile.ZipFile(io.BytesIO(model)) as archive:
            text = archive.read(name).decode("utf-8")
    # a damaged archive fails in many ways (bad header, unknown compression, truncated data, bad CRC)
    except (zipfile.BadZipFile, KeyError, UnicodeDecodeError, NotImplementedError, ValueError, EOFError,
            RuntimeError, OSError, zlib.error) as e:
        msg = f"{source}: metadata names label file {name!r} but the model does not hold it ({e})"
        raise ModelFileError(msg) from None
    return parse_labels(text)


# ------------------------------------------------------------------------------------------ writing
@dataclass
class SegmenterMetadata:
    """What the metadata says about a DeepLab-style segmentation model."""

    name: str
    labels: list
    version: str = "1"
    description: str = ""
    author: str = "edge-deeplab"
    norm_mean: list = field(default_factory=lambda: [127.5])  # model input = (pixel - mean) / std
    norm_std: list = field(default_factory=lambda: [127.5])
    input_dtype: str = "float32"  # 'float32', 'uint8' or 'int8': sets the input value range (stats)
    output_kind: str = "logits"  # 'logits' ([1,H,W,C] scores) or 'labels' ([1,H,W] class ids)
    activation: str | None = "softmax"  # for logits: what turns them into MediaPipe confidence masks


class _Builder:
    """The few FlatBuffers constructions the metadata needs, on top of flatbuffers.Builder."""

    def __init__(self):
        self.b = flatbuffers.Builder(1024)

    def string(self, text):
        return None if text is None else self.b.CreateString(text)

    def floats(self, values):
        return self.b.CreateNumpyVector(np.asarray(values, dtype="<f4"))

    def bytes(self, data, alignment=16):
        self.b.StartVector(1, len(data), alignment)  # CustomMetadata.data is (force_align: 16)
        self.b.head -= len(data)
        self.b.Bytes[self.b.head:self.b.head + len(data)] = data
        return self.b.EndVector()

    def offsets(self, items):
        self.b.StartVector(4, len(items), 4)
        for item in reversed(items):
            self.b.PrependUOffsetTRelative(item)
        return self.b.EndVector()

    def table(self, num_fields, offsets=(), scalars=()):
        """A table; ``offsets``: (field index, offset or None); ``scalars``: (field index, kind, value)."""
        self.b.StartObject(num_fields)
        for index, offset in offsets:
            if offset is not None:
                self.b.PrependUOffsetTRelativeSlot(index, offset, 0)
        for index, kind, value in scalars:
            prepend = {"int8": self.b.PrependInt8Slot, "uint8": self.b.PrependUint8Slot,
                       "int32": self.b.PrependInt32Slot}[kind]
            prepend(index, value, 0)
        return self.b.EndObject()

    def finish(self, root, identifier) -> bytes:
        self.b.Finish(root, file_identifier=identifier)
        return bytes(self.b.Output())


def build_metadata(meta: SegmenterMetadata) -> bytes:
    """The ``TFLITE_METADATA`` FlatBuffer (identifier M001) for a one-input, one-output segmenter."""
    if meta.output_kind not in ("logits", "labels"):
        raise ValueError(f"output_kind must be 'logits' or 'labels', got {meta.output_kind!r}")
    f = _Builder()
    # Tables are built children first (FlatBuffers builds back to front).
    # ---- input: an RGB image, normalized as (pixel - mean) / std
    image_props = f.table(2, scalars=[(0, "int8", _RGB)])  # ImageProperties{color_space, default_size}
    input_content = _content(f, image_props, dim_range=None)
    norm = f.table(2, offsets=[(0, f.floats(meta.norm_mean)), (1, f.floats(meta.norm_std))])
    unit = _process_unit(f, norm)
    lo, hi = _input_range(meta)
    stats = f.table(2, offsets=[(0, f.floats(hi)), (1, f.floats(lo))])  # Stats{max, min}
    input_tensor = _tensor_metadata(
        f, "image", f"Input image: RGB, normalized as (pixel - {_fmt(meta.norm_mean)}) / {_fmt(meta.norm_std)}.",
        content=input_content, process_units=f.offsets([unit]), stats=stats)

    # ---- output: per-class scores or class ids over the image; dimensions 1..2 are the image plane
    label_type = _TENSOR_AXIS_LABELS if meta.output_kind == "logits" else _TENSOR_VALUE_LABELS
    label_file = f.table(5, offsets=[(0, f.string(LABEL_FILE)), (1, f.string("Class names, one per line."))],
                         scalars=[(2, "int8", label_type)])
    mask_props = f.table(2, scalars=[(0, "int8", _GRAYSCALE)])
    output_content = _content(f, mask_props, dim_range=(1, 2))
    output_description = ("Per-class scores (logits) for every pixel." if meta.output_kind == "logits"
                          else "Class id of every pixel.")
    output_tensor = _tensor_metadata(f, "segmentation masks", output_description, content=output_content,
                                     associated_files=f.offsets([label_file]))

    custom = None
    if meta.output_kind == "logits" and meta.activation:
        custom = f.offsets([_segmenter_options(f, meta.activation)])
    subgraph = f.table(10, offsets=[(2, f.offsets([input_tensor])), (3, f.offsets([output_tensor])),
                                    (9, custom)])
    version = MIN_PARSER_VERSION if custom is not None else MIN_PARSER_VERSION_NO_CUSTOM
    root = f.table(8, offsets=[(0, f.string(meta.name)), (1, f.string(meta.description or None)),
                               (2, f.string(meta.version)), (3, f.offsets([subgraph])),
                               (4, f.string(meta.author)), (7, f.string(version))])
    return f.finish(root, b"M001")


def _content(f, properties, dim_range):
    value_range = None
    if dim_range is not None:
        value_range = f.table(2, scalars=[(0, "int32", dim_range[0]), (1, "int32", dim_range[1])])
    # Content{content_properties_type (union tag, field 0), content_properties (1), range (2)}
    return f.table(3, offsets=[(1, properties), (2, value_range)], scalars=[(0, "uint8", _IMAGE_PROPERTIES)])


def _process_unit(f, normalization):
    # ProcessUnit{options_type (union tag, field 0), options (1)}
    return f.table(2, offsets=[(1, normalization)], scalars=[(0, "uint8", _NORMALIZATION_OPTIONS)])


def _tensor_metadata(f, name, description, content, process_units=None, stats=None, associated_files=None):
    # TensorMetadata{name, description, dimension_names, content, process_units, stats, associated_files}
    return f.table(7, offsets=[(0, f.string(name)), (1, f.string(description)), (3, content),
                               (4, process_units), (5, stats), (6, associated_files)])


def _segmenter_options(f, activation):
    """MediaPipe's CustomMetadata "SEGMENTER_METADATA": how to turn the output into confidence masks."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
    inner = _Builder()
    options = inner.table(2, scalars=[(0, "int8", ACTIVATIONS[activation])])
    data = inner.finish(options, _SEGMENTER_IDENTIFIER)
    return f.table(2, offsets=[(0, f.string(SEGMENTER_METADATA)), (1, f.bytes(data))])


def _input_range(meta):
    if meta.input_dtype == "uint8":
        return [0.0], [255.0]
    if meta.input_dtype == "int8":
        return [-128.0], [127.0]
    mean, std = np.broadcast_arrays(np.asarray(meta.norm_mean, float), np.asarray(meta.norm_std, float))
    return list((0 - mean) / std), list((255 - mean) / std)


def _fmt(values):
    return ", ".join(f"{v:g}" for v in values)


# ------------------------------------------------------------------------------------ into the model
def add_metadata(model: bytes, metadata: bytes, files: dict) -> bytes:
    """``model`` with ``metadata`` as its TFLITE_METADATA entry and ``files`` ({name: bytes}) zipped after it.

    An existing TFLITE_METADATA entry and any previously appended files are replaced.
    """
    from ai_edge_litert import schema_py_generated as fb

    obj = model_object(model)
    buffer = fb.BufferT()
    buffer.data = np.frombuffer(metadata, np.uint8)
    entries = [m for m in (obj.metadata or []) if _name(m) != METADATA_NAME]
    obj.buffers = list(obj.buffers or []) + [buffer]
    entry = fb.MetadataT()
    entry.name, entry.buffer = METADATA_NAME, len(obj.buffers) - 1
    obj.metadata = entries + [entry]
    builder = flatbuffers.Builder(len(model) + len(metadata) + 1024)
    builder.Finish(obj.Pack(builder), file_identifier=b"TFL3")
    out = io.BytesIO(bytes(builder.Output()))
    # Appending to a file that is not a zip writes a zip after it; readers find it from the end.
    # ZIP_STORED: MediaPipe reads associated files in place.
    with zipfile.ZipFile(out, "a", compression=zipfile.ZIP_STORED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return out.getvalue()


def _name(entry):
    name = entry.name
    return name.decode("utf-8") if isinstance(name, bytes) else name


def with_segmenter_metadata(model: bytes, meta: SegmenterMetadata) -> bytes:
    """``model`` carrying ``meta`` and its label file."""
    if not meta.labels:
        raise OptionError("metadata needs the class names (one label per class)")
    if any("\n" in label or not label.strip() for label in meta.labels):
        raise OptionError("class names must be non-empty single lines")
    labels = ("\n".join(meta.labels) + "\n").encode("utf-8")
    return add_metadata(model, build_metadata(meta), {LABEL_FILE: labels})
