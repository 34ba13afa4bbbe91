"""Read TFLite model metadata (normalization, labels, name) with the standard library only.

A .tflite file is a FlatBuffer (schema.fbs, identifier "TFL3"). Its ``metadata`` list may hold an
entry named ``TFLITE_METADATA`` whose buffer is a second FlatBuffer (metadata_schema.fbs, identifier
"M001"), as written by the TFLite Support / MediaPipe metadata writers. Files it names, such as the
label file, are packed into a zip archive appended to the model. Neither TensorFlow nor a generated
schema is needed: the few fields read here are reached by their position in the schema.
"""
from __future__ import annotations

import io
import struct
import zipfile
import zlib
from dataclasses import dataclass

from edge_deeplab.errors import UserError

METADATA_NAME = "TFLITE_METADATA"

# Field positions in the schemas (a table's field i is stored at vtable slot 4 + 2 * i).
_MODEL_BUFFERS, _MODEL_METADATA = 4, 6  # schema.fbs: Model
_METADATA_NAME, _METADATA_BUFFER = 0, 1  # schema.fbs: Metadata
_BUFFER_DATA, _BUFFER_OFFSET, _BUFFER_SIZE = 0, 1, 2  # schema.fbs: Buffer
_MM_NAME, _MM_DESCRIPTION, _MM_SUBGRAPHS, _MM_FILES = 0, 1, 3, 6  # metadata_schema.fbs: ModelMetadata
_SG_INPUTS, _SG_OUTPUTS, _SG_FILES = 2, 3, 4  # SubGraphMetadata
_TM_PROCESS_UNITS, _TM_FILES = 4, 6  # TensorMetadata
_PU_OPTIONS_TYPE, _PU_OPTIONS = 0, 1  # ProcessUnit (union ProcessUnitOptions)
_NORMALIZATION_OPTIONS = 1  # ProcessUnitOptions member number of NormalizationOptions
_NORM_MEAN, _NORM_STD = 0, 1  # NormalizationOptions
_FILE_NAME, _FILE_TYPE = 0, 2  # AssociatedFile
_TENSOR_AXIS_LABELS, _TENSOR_VALUE_LABELS = 2, 3  # AssociatedFileType


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
    root = _root(model)  # the identifier "TFL3" is optional in .tflite files
    for entry in root.tables(_MODEL_METADATA):
        if entry.string(_METADATA_NAME) != METADATA_NAME:
            continue
        buffers = root.tables(_MODEL_BUFFERS)
        buffer = buffers[entry.scalar(_METADATA_BUFFER, "I")]
        data = buffer.byte_vector(_BUFFER_DATA)
        if not data:  # models over 2 GB keep buffers after the FlatBuffer, addressed by offset and size
            offset, size = buffer.scalar(_BUFFER_OFFSET, "Q"), buffer.scalar(_BUFFER_SIZE, "Q")
            data = model[offset:offset + size]
        return bytes(data)
    return None


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
        raise UserError(f"{source}: corrupt TFLite metadata ({e})") from None
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
        raise UserError(msg) from None
    return parse_labels(text)
