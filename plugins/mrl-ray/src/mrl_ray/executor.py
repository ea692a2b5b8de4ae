"""The Ray executor (see the package docstring).

On a cluster the embeddings folder must be where every node reads it (NFS, a mounted bucket):
the workers read the shard texts the driver wrote, by path. With no ``address`` a local Ray
instance is started for the embed and stopped after it (``local_cpus`` CPUs, default all).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from mrl_plugins.components import Executor, Params
from mrl_plugins.embed import EmbedJob, ShardTask, ShardVectors
from mrl_plugins.errors import UserError
from mrl_plugins.hookspecs import hookimpl

logger = logging.getLogger("mrl_plugins")


class RayParams(Params):
    address: str | None = Field(None, description="The cluster to join (ray://head:10001, or auto: the one this "
                                "machine belongs to); default: start a local Ray instance for the embed.")
    workers: int | None = Field(None, ge=1, description="Model actors (default: one per GPU of the cluster when "
                                "gpus_per_worker > 0, else its CPUs / cpus_per_worker).")
    cpus_per_worker: float = Field(1.0, gt=0, description="CPUs each model actor holds (its torch threads).")
    gpus_per_worker: float = Field(0.0, ge=0, description="GPUs each model actor holds (1 on a GPU cluster).")
    local_cpus: int | None = Field(None, ge=1, description="CPUs of the local instance started without an address "
                                   "(default: all of this machine's).")


class _Encoder:
    """A Ray Data actor: loads the model once, then encodes batches of shard lines."""

    def __init__(self, job: EmbedJob, device: str):
        self.job, self.model = job, job.load_model(device)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [json.loads(line)["text"] for line in batch["text"]]
        result = self.job.encode(self.model, texts)
        return {"path": batch["path"], "vector": result.vectors, "over": result.over_length}


class Ray(Executor[RayParams]):
    """A Ray cluster (or a local Ray instance): Ray Data reads the shards, model actors embed them."""

    name = "ray"
    Params = RayParams

    def describe(self) -> str:
        where = self.params.address or "a local Ray instance"
        return f"ray: Ray Data on {where}"

    def embed(self, job: EmbedJob, tasks: Sequence[ShardTask],
              progress: Callable[[int], None]) -> Iterator[tuple[ShardTask, ShardVectors]]:
        import ray

        for name in ("ray", "ray.data"):  # Ray's own INFO lines would drown the command's progress
            logging.getLogger(name).setLevel(logging.WARNING)
        started = not ray.is_initialized()
        if started:
            reachable(self.params.address)
            try:
                ray.init(address=self.params.address, num_cpus=None if self.params.address else self.params.local_cpus,
                         include_dashboard=False, log_to_driver=False, configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise UserError(f"--executor ray: cannot reach the Ray cluster at {self.params.address} ({exc}); "
                                "check --address (ray://HEAD:10001, or auto on a node of the cluster).") from None
        try:
            yield from self._embed(ray, job, tasks, progress)
        finally:
            if started:
                ray.shutdown()

    def _embed(self, ray: Any, job: EmbedJob, tasks: Sequence[ShardTask],
               progress: Callable[[int], None]) -> Iterator[tuple[ShardTask, ShardVectors]]:
        for task in tasks:  # nothing to read: an empty shard is done as it is
            if task.rows == 0:
                yield task, ShardVectors(np.zeros((0, job.full_dim), job.dtype), np.zeros(0, bool))
        work = [t for t in tasks if t.rows]
        if not work:
            return
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True  # shards come back whole, one after another
        context.enable_progress_bars = False  # the command's own bar counts documents
        resources = ray.cluster_resources()
        gpus = self.params.gpus_per_worker
        workers = self.params.workers or max(1, int(resources.get("GPU", 0) // gpus) if gpus
                                             else int(resources.get("CPU", 1) // self.params.cpus_per_worker))
        by_path = {str(Path(t.texts).resolve()): t for t in work}
        # reading shard texts is light: it asks no CPU of its own, or model actors holding every CPU
        # would leave the reads unscheduled (and the embed waiting for ever)
        dataset = ray.data.read_text(list(by_path), include_paths=True, num_cpus=0)
        dataset = dataset.map_batches(
            _Encoder, fn_constructor_kwargs={"job": job, "device": "cuda" if gpus else "cpu"},
            batch_size=job.chunk,  # a large window, which encode sorts by length
            concurrency=workers, num_cpus=self.params.cpus_per_worker, num_gpus=gpus or None, batch_format="numpy",
        )
        pending: dict[str, list[dict[str, np.ndarray]]] = {}
        counts: dict[str, int] = {}
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            paths = np.asarray(batch["path"]).astype(str)
            for path in dict.fromkeys(paths):  # each shard in the batch, in order
                rows = paths == path
                key = str(Path(path.removeprefix("local://")).resolve())
                pending.setdefault(key, []).append({"vector": batch["vector"][rows], "over": batch["over"][rows]})
                counts[key] = counts.get(key, 0) + int(rows.sum())
                task = by_path[key]
                if counts[key] == task.rows:
                    parts = pending.pop(key)
                    yield task, ShardVectors(np.concatenate([p["vector"] for p in parts]).astype(job.dtype),
                                             np.concatenate([p["over"] for p in parts]).astype(bool))
            progress(len(paths))
        if pending:
            raise RuntimeError(f"Ray Data returned part of shard(s) {sorted(by_path[k].index for k in pending)}")


def reachable(address: str | None, timeout: float = 10.0) -> None:
    """Refuse an address nothing answers at, in seconds: Ray itself waits minutes for a cluster
    that is not there."""
    import socket

    if not address or address == "auto":
        return
    hostport = address.removeprefix("ray://").split("/")[0]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--address {address}: expected HOST:PORT or ray://HOST:PORT (e.g. ray://head:10001), or auto.")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise UserError(f"--executor ray: cannot reach the Ray cluster at {address} ({exc.strerror or exc}); check "
                        "--address (ray://HEAD:10001 for Ray Client, HEAD:6379 on a node of the cluster, or auto), and "
                        "that the cluster is up.") from None


@hookimpl
def register_executors(register):
    register(Ray)
