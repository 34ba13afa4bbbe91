"""The arithmetic of TFLite's 8-bit tensors, in one place: real = (q - zero_point) * scale."""
from __future__ import annotations

import numpy as np


def quantize(real, scale: float, zero_point: int, dtype) -> np.ndarray:
    """Real values -> the integers stored in a ``dtype`` tensor: halves round to even (numpy's rule, which
    the Android app's InputEncoder copies), clamped to the type's range. Computed in the precision of
    ``real`` (float32 images give what a float32 pipeline gives; the runtime's pixel table is float64)."""
    limits = np.iinfo(dtype)
    return np.clip(np.round(np.asarray(real) / scale + zero_point), limits.min, limits.max).astype(dtype)


def dequantize(stored, scale: float, zero_point: int) -> np.ndarray:
    """Stored integers -> real values (float32)."""
    return ((np.asarray(stored).astype(np.float32) - np.float32(zero_point)) * np.float32(scale)).astype(np.float32)


def quantize_detail(x: np.ndarray, detail: dict) -> np.ndarray:
    """``x`` for an interpreter tensor (``get_input_details()`` entry): unchanged when it is float32."""
    if detail["dtype"] == np.float32:
        return x
    scale, zero_point = detail["quantization"]
    return quantize(x, scale, zero_point, detail["dtype"])


def dequantize_detail(y: np.ndarray, detail: dict) -> np.ndarray:
    """An interpreter output as real values: unchanged when float32 or not quantized."""
    scale, zero_point = detail["quantization"]
    if detail["dtype"] == np.float32 or not scale:
        return y
    return dequantize(y, scale, zero_point)
