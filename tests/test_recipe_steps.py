"""benchmarks/recipe_steps.py: steps skipped when done, their records kept across runs, the current ones listed."""
import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture()
def recipe_steps():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import recipe_steps

        yield recipe_steps
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_a_done_step_is_not_run_and_only_this_runs_steps_are_current(recipe_steps, tmp_path):
    scores = tmp_path / "scores"
    scores.mkdir()
    old = [{"step": "train at 433", "command": "edge-deeplab train --run-dir w/a_433", "seconds": 9.0,
            "load_avg_1min_after": 1.0},
           {"step": "train at 513", "command": "edge-deeplab no-such-verb --run-dir w/a_513", "seconds": 8.0,
            "load_avg_1min_after": 1.0}]
    (scores / "steps.json").write_text(json.dumps(old))
    recipe = recipe_steps.Recipe(scores)
    done = tmp_path / "model.keras"
    done.write_text("")
    # a step whose output is there is not run (this verb would fail the recipe), but it is current
    assert recipe.run("train at 513", ["no-such-verb", "--run-dir", "w/a_513"], done=done) is None
    assert recipe.steps == old  # both records kept for later runs
    assert recipe.current_steps() == [old[1]]
