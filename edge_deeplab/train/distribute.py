"""Training on several devices or machines: the tf.distribute strategy, the cluster, and what the workers agree on.

A multi-worker run is a cluster of processes configured the way TensorFlow clusters are: ``$TF_CONFIG``
(``{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": N}}``), or the same
from ``--worker host:port,host:port --task-index N`` (``cluster_config``). Every worker runs the same
command; worker 0 (or the task of type ``chief``) is the chief, which alone writes the run's files.

Training is synchronous data parallelism (``MultiWorkerMirroredStrategy``): the global batch is split
across the replicas, gradients are summed over all of them after every step, so every worker holds the
same weights. What a single process would do differs only in float reduction order and in batch norm
(its statistics are per replica, not synchronized) -- ``--freeze-bn`` removes that difference.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import socket

import numpy as np
import tensorflow as tf

from edge_deeplab.choices import STRATEGIES, check_choice
from edge_deeplab.errors import OptionError

_ADDRESS = re.compile(r"^[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")


def cluster_config(workers: str, task_index: int) -> dict:
    """The TF_CONFIG of worker ``task_index`` in a cluster of ``workers`` ("host:port,host:port")."""
    addresses = [w.strip() for w in workers.split(",") if w.strip()]
    if not addresses:
        raise OptionError("--worker needs the cluster's workers as HOST:PORT,HOST:PORT")
    bad = [a for a in addresses if not _ADDRESS.match(a)]
    if bad:
        raise OptionError(f"--worker: {bad[0]!r} is not HOST:PORT")
    if len(set(addresses)) != len(addresses):
        raise OptionError("--worker: an address is listed twice")
    if task_index is None or not 0 <= task_index < len(addresses):
        raise OptionError(f"--task-index must be 0..{len(addresses) - 1} (this worker's place in --worker)")
    return {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": task_index}}


def free_local_ports(count: int) -> list:
    """Ports free on 127.0.0.1 now, for a cluster of ``count`` workers on this machine (tests, benchmarks)."""
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def read_tf_config() -> dict | None:
    """$TF_CONFIG as a dict (None when unset); one clear line when it is not a cluster description."""
    text = os.environ.get("TF_CONFIG")
    if not text:
        return None
    try:
        config = json.loads(text)
        task, cluster = config["task"], config["cluster"]
        if task["type"] not in cluster or not 0 <= int(task["index"]) < len(cluster[task["type"]]):
            raise KeyError("task")
    except (ValueError, KeyError, TypeError) as e:
        raise OptionError(f"$TF_CONFIG: not a cluster description with this task in it ({e})") from None
    return config


def make_strategy(name: str = "default", tpu: str | None = None, cluster: dict | None = None):
    """default: one device; mirrored: all local GPUs; multi-worker: the cluster of ``cluster`` (a TF_CONFIG
    dict, set into the environment) or of $TF_CONFIG; tpu: a TPU.

    Create it before any other TensorFlow work: a multi-worker strategy configures the process's runtime.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi-worker":
        if cluster is not None:
            os.environ["TF_CONFIG"] = json.dumps(cluster)
        if read_tf_config() is None:
            raise OptionError("--strategy multi-worker needs its cluster: set $TF_CONFIG, or pass "
                            "--worker HOST:PORT,HOST:PORT and --task-index N")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, tf.errors.OpError) as e:
            raise OptionError(f"no TPU found ({str(e).splitlines()[0]})") from None
        return tf.distribute.TPUStrategy(resolver)
    check_choice("strategy", name, STRATEGIES)


def is_chief(strategy) -> bool:
    """Whether this process writes the run's files: the chief, or worker 0 of a cluster without one."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or resolver.task_type in (None, "chief"):
        return True
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in resolver.cluster_spec().jobs


def num_workers(strategy) -> int:
    """The processes of the cluster (chief and workers); 1 outside a cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or resolver.task_type is None:
        return 1
    jobs = resolver.cluster_spec().as_dict()
    return sum(len(jobs.get(job, [])) for job in ("chief", "worker"))


def worker_name(strategy) -> str:
    """"worker 1 of 2" in a cluster, "" in a single process."""
    if num_workers(strategy) == 1:
        return ""
    resolver = strategy.cluster_resolver
    return f"{resolver.task_type} {resolver.task_id} of {num_workers(strategy)}"


def broadcast_from_first_replica(strategy, variables):
    """Give every replica the first replica's (the chief's) values of ``variables``: weights set outside
    the strategy (a loaded or freshly initialised model, a re-estimated batch norm, a restored checkpoint)
    are then the same on every worker, whatever each process read or drew."""
    if strategy.num_replicas_in_sync == 1:
        return

    def first_replica_values():
        context = tf.distribute.get_replica_context()
        mine = tf.cast(tf.equal(context.replica_id_in_sync_group, 0), tf.float32)
        return context.all_reduce(tf.distribute.ReduceOp.SUM,
                                  [tf.cast(v, tf.float32) * mine for v in variables])

    values = strategy.experimental_local_results(strategy.run(tf.function(first_replica_values)))[0]
    for variable, value in zip(variables, values):
        variable.assign(tf.cast(value, variable.dtype))


def cluster_min(strategy, value: int) -> int:
    """The smallest of every worker's ``value`` (e.g. the epoch each can resume from)."""
    if strategy.num_replicas_in_sync == 1:
        return int(value)

    def gather():
        return tf.distribute.get_replica_context().all_gather(tf.constant([value], tf.int64), axis=0)

    gathered = strategy.experimental_local_results(strategy.run(tf.function(gather)))[0]
    return int(tf.reduce_min(gathered))


def weights_fingerprint(weights) -> str:
    """A short SHA-256 of the weights' bytes: equal on every worker of a run that stayed in sync."""
    digest = hashlib.sha256()
    for w in weights:
        digest.update(np.ascontiguousarray(np.asarray(w, np.float32)).tobytes())
    return digest.hexdigest()[:16]
