"""Multi-worker training: the cluster options, the per-worker input split, and two real worker processes on
127.0.0.1 that train in sync, survive one being killed, and match a single process."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from edge_deeplab.errors import UserError
from edge_deeplab.io_utils import CRASH_ENV

pytest.importorskip("tensorflow")

from edge_deeplab.train.distribute import (cluster_config, free_local_ports, make_strategy,  # noqa: E402
                                           read_tf_config)
from edge_deeplab.train.pipeline import replica_share  # noqa: E402


WORKER_TIMEOUT = 240  # seconds a worker may take (two TensorFlow start-ups and a few steps on 2 shared cores)


def test_cluster_config_is_tf_config():
    config = cluster_config("10.0.0.1:2222, 10.0.0.2:2222", 1)
    assert config == {"cluster": {"worker": ["10.0.0.1:2222", "10.0.0.2:2222"]}, "task": {"type": "worker", "index": 1}}


@pytest.mark.parametrize("workers, index, says", [
    ("", 0, "HOST:PORT,HOST:PORT"), ("host", 0, "'host' is not HOST:PORT"), ("a:1,a:1", 0, "listed twice"),
    ("a:1,b:2", 2, "--task-index must be 0..1"), ("a:1,b:2", None, "--task-index must be 0..1")])
def test_cluster_config_refuses_what_is_not_a_cluster(workers, index, says):
    with pytest.raises(UserError, match=says):
        cluster_config(workers, index)


@pytest.mark.parametrize("value", ["{not json", '{"cluster": {"worker": ["a:1"]}}',
                                   '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}'])
def test_a_bad_tf_config_is_one_line(monkeypatch, value):
    monkeypatch.setenv("TF_CONFIG", value)
    with pytest.raises(UserError, match=r"\$TF_CONFIG: not a cluster description"):
        read_tf_config()


def test_multi_worker_without_a_cluster_says_how_to_give_one(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(UserError, match="needs its cluster: set \\$TF_CONFIG, or pass --worker"):
        make_strategy("multi-worker")


@pytest.mark.parametrize("replicas, pipelines", [(2, 2), (4, 2), (4, 1)])
def test_the_workers_together_see_every_global_batch_once(replicas, pipelines):
    global_batch, n = 8, 35  # 4 full global batches, 3 samples dropped as in a single process
    shares = [replica_share(n, global_batch, replicas, p, pipelines) for p in range(pipelines)]
    per_replica = shares[0][1]
    assert per_replica == global_batch // replicas
    # pipeline p's replica slices of step s are the slots of global batch s, in replica order
    for step in range(n // global_batch):
        slots = []
        for positions, _ in shares:
            local = len(positions) // (n // global_batch)
            slots.extend(positions[step * local:(step + 1) * local])
        assert slots == list(range(step * global_batch, (step + 1) * global_batch))


def test_a_batch_that_does_not_split_across_replicas_is_refused():
    with pytest.raises(UserError, match="batch size 6 .* multiple of the 4 replicas"):
        replica_share(20, 6, 4, 0, 2)


def test_worker_options_belong_to_multi_worker(tmp_path, capsys):
    from edge_deeplab.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["train", "--preset", "mobilenetv2_dm0.35_voc", "--data", str(tmp_path), "--format", "folder", "--run-dir", str(tmp_path / "r"),
              "--strategy", "mirrored", "--worker", "127.0.0.1:1,127.0.0.1:2", "--task-index", "0"])
    assert exit_.value.code == 2
    assert "--worker and --task-index go with --strategy multi-worker" in capsys.readouterr().err


# ------------------------------------------------------------------------------ two real worker processes
def train_args(init, data, run_dir, epochs):
    # no augmentation, frozen batch norm (its batch statistics would be per worker), no dropout: the run
    # is a deterministic function of the global batches
    return ["train", "--init", init, "--data", data, "--format", "folder", "--data-classes", "2", "--epochs",
            epochs, "--batch-size", "4", "--optimizer", "adam", "--lr", "1e-2", "--min-scale", "1", "--max-scale",
            "1", "--no-flip", "--freeze-bn", "--cache", "--no-progress", "--run-dir", run_dir]


def run_cluster(args, crash_worker1=None):
    """Both workers of a 2-worker cluster on free ports; returns [(exit status, stdout + stderr)] per worker.
    Always reaps both (a worker still running at the time limit is killed)."""
    ports = free_local_ports(2)
    cluster = ["--worker", ",".join(f"127.0.0.1:{p}" for p in ports)]
    procs = []
    try:
        for index in (0, 1):
            env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
            env.pop(CRASH_ENV, None)
            env.pop("TF_CONFIG", None)
            if index == 1 and crash_worker1:
                env[CRASH_ENV] = crash_worker1
            procs.append(subprocess.Popen([sys.executable, "-m", "edge_deeplab", *map(str, args), *cluster,
                                           "--task-index", str(index)], env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, text=True))
        return [(p.returncode, out) for p, out in ((p, p.communicate(timeout=WORKER_TIMEOUT)[0]) for p in procs)]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


@pytest.mark.slow
def test_two_workers_train_in_sync_resume_after_one_is_killed_and_match_one_process(tmp_path):
    from test_train import SIZE, make_shapes_dataset

    from edge_deeplab.config import DeepLabConfig
    from edge_deeplab.model.deeplab import build_deeplab, load_model, save_model

    data = make_shapes_dataset(tmp_path / "data", n=8)  # 2 global batches of 4 per epoch
    init = tmp_path / "init.keras"
    save_model(build_deeplab(DeepLabConfig(depth_multiplier=0.35, input_size=(SIZE, SIZE), num_classes=2,
                                           dropout=0)), init)
    run_dir = tmp_path / "cluster"
    args = train_args(init, data, run_dir, 4)

    # worker 1 is killed (SIGKILL) at the first step of epoch 3; the chief notices and stops with one line
    (chief_rc, chief_out), (worker_rc, _) = run_cluster(args, crash_worker1="train:step@5")
    assert worker_rc == -9
    assert chief_rc == 2 and "error: worker 1 stopped; start every worker again" in chief_out
    assert [h["epoch"] for h in json.loads((run_dir / "history.json").read_text())] == [1, 2]

    # both started again with the same command: they resume after epoch 2, not from the start
    (chief_rc, chief_out), (worker_rc, worker_out) = run_cluster(args)
    assert chief_rc == 0 and worker_rc == 0, chief_out + worker_out
    assert "resumed after epoch 2" in chief_out and "resumed after epoch 2" in worker_out
    assert [h["epoch"] for h in json.loads((run_dir / "history.json").read_text())] == [1, 2, 3, 4]

    # identical weights on both workers; the chief alone wrote the run's files
    fingerprints = [line.split("weights ")[1] for out in (chief_out, worker_out) for line in out.splitlines()
                    if line.startswith(("worker 0 of 2: weights", "worker 1 of 2: weights"))]
    assert len(fingerprints) == 2 and fingerprints[0] == fingerprints[1]
    assert f"saved {run_dir / 'model.keras'}" in chief_out and "the chief saved the model" in worker_out
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoints", "history.json", "logs", "model.keras",
                                                         "run.json"]  # the worker's own checkpoints are gone
    from edge_deeplab.train.distribute import weights_fingerprint

    trained = load_model(run_dir / "model.keras").get_weights()
    assert weights_fingerprint(trained) == fingerprints[0]

    # one process over the same global batches: the same weights up to float reduction order
    single = tmp_path / "single"
    from edge_deeplab.cli import main

    main(train_args(init, data, single, 4))
    reference = load_model(single / "model.keras").get_weights()
    start = load_model(init).get_weights()
    moved = max(float(np.abs(r - s).max()) for r, s in zip(reference, start))
    differ = max(float(np.abs(t - r).max()) for t, r in zip(trained, reference))
    assert moved > 1e-2  # training changed the weights...
    assert differ < 1e-5  # ...and the cluster changed them as one process did (3e-8 measured)
