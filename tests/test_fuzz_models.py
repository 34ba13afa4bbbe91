"""Seeded mutations of model files through the runtime, each in a forked child: a damaged model ends in one
clear error (or, if the damage hits nothing that matters, a result), never a traceback, a crash or a hang.
benchmarks/fuzz_models.py runs 1,000 mutants through predict, eval and bench the same way."""
import numpy as np
import pytest

import tiny_tflite
from fuzzing import fuzz
from edge_deeplab.runtime.interpreter import SegmentationModel

pytestmark = pytest.mark.slow  # 1,000s of mutants of official models through the runtime

IMAGE = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)


def segment(path):
    SegmentationModel(path, num_threads=1).segment(IMAGE)


def check(result):
    verdicts = result["verdicts"]
    assert set(verdicts) <= {"ok", "error"}, (dict(verdicts), result["failures"][:5])
    assert verdicts["error"] > 0  # the mutations do damage: some are refused


def test_mutants_of_a_tiny_model(tmp_path):
    model = tmp_path / "tiny.tflite"
    model.write_bytes(tiny_tflite.tanh_logits(metadata=tiny_tflite.metadata_flatbuffer()))
    check(fuzz(model, 200, seed=1, job=segment, work_dir=tmp_path / "mutants", limit_s=20))


def test_mutants_of_an_official_model(shared, tmp_path):
    """The 8-bit depth-0.5 model ends in ARG_MAX: the runtime reads its op and tensor details too (where
    flipped bytes in tensor names once gave a UnicodeDecodeError)."""
    model = shared("models", "official", "deeplabv3_mnv2_dm05_pascal_quant.tflite")
    check(fuzz(model, 200, seed=2, job=segment, work_dir=tmp_path / "mutants", limit_s=30))


def test_a_tensor_name_that_is_not_utf8_is_a_corrupt_model(shared, tmp_path):
    """What 6 in 1,000 random mutations of the official models hit (bytes flipped in a tensor name)."""
    from edge_deeplab.errors import UserError

    data = bytearray(shared("models", "official", "deeplabv3_mnv2_dm05_pascal_quant.tflite").read_bytes())
    at = data.find(b"ArgMax")
    data[at + 1:at + 3] = b"\xc3\x28"  # an invalid UTF-8 sequence
    path = tmp_path / "bad_name.tflite"
    path.write_bytes(bytes(data))
    with pytest.raises(UserError, match=r"bad_name.tflite: corrupt model \('utf-8' codec can't decode"):
        SegmentationModel(path, num_threads=1)
