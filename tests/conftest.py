import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
# ../shared beside the repository (CI and developers have it; a user's machine does not).
SHARED = Path(os.environ.get("EDGE_DEEPLAB_SHARED", REPO.parent / "shared"))


def shared_path(*parts) -> Path:
    """A path under ../shared, or skip the test with the reason when it is absent."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"{p} is absent (tests that use real models / data need ../shared beside the repo)")
    return p


@pytest.fixture
def shared():
    return shared_path


@pytest.fixture(scope="session")
def official_keras():
    """``official_keras(file)`` -> (Keras model, source) of an official model, imported once per test run.
    Shared by every test that asks: use it as it is, or rebuild / adapt it (new models); never train it."""
    from functools import lru_cache

    @lru_cache(maxsize=None)
    def imported(name):
        from edge_deeplab.model.importer import import_tflite

        return import_tflite(shared_path("models", "official", name))

    return imported


# The longest test files (measured: 60-230 s each on 2 cores, `pytest --durations`), run first: `make test`
# gives each worker whole files, and a long file started last would leave the other worker idle while it runs.
LONG_FILES = ("test_distribute.py", "test_train.py", "test_qat.py", "test_convert.py", "test_interruptions.py",
              "test_model.py", "test_distill.py", "test_fuzz_models.py", "test_camvid_pipeline.py", "test_evaluate.py",
              "test_sweep.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each file keeps its order
