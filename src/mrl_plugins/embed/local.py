"""The built-in executor: ``mrl-run embed`` on this machine.

``local`` encodes in this process on one device; with ``processes > 1`` or several ``devices``
it goes through sentence-transformers' own multi-process pool
(``SentenceTransformer.start_multi_process_pool``: one process per device, the model shared,
chunks of texts handed out by a queue), never a launcher of ours. One process per GPU is the
rule; processes on the CPU split its cores between them (each torch gets its share of threads),
which pays only when one process leaves cores idle (docs/benchmarks.md measures it).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from pydantic import Field, field_validator

from ..components import Executor, Params
from ..hookspecs import hookimpl
from .job import EmbedJob, ShardTask, ShardVectors, shard_texts

logger = logging.getLogger("mrl_plugins")


class LocalParams(Params):
    processes: int = Field(1, ge=1, description="Processes to encode with (through sentence-transformers' pool); "
                           "each is placed on the next of `devices`, or on the CPU.")
    devices: list[str] = Field(default_factory=list, description="Torch devices, one process each, e.g. "
                               "['cuda:0', 'cuda:1'] (default: the --device of the command).")

    @field_validator("devices")
    @classmethod
    def _devices(cls, value: list[str]) -> list[str]:
        for device in value:
            kind = device.split(":")[0]
            if kind not in ("cpu", "cuda", "mps", "npu", "xpu"):
                raise ValueError(f"'{device}' is not a torch device (cpu, cuda:N, mps …)")
        return value


class Local(Executor[LocalParams]):
    """This machine: one process on one device, or sentence-transformers' multi-process pool."""

    name = "local"
    Params = LocalParams

    def targets(self, job: EmbedJob) -> list[str]:
        """The devices of the pool's processes (empty: encode in this process)."""
        devices = list(self.params.devices)
        if len(devices) <= 1 and self.params.processes <= 1:
            return []
        count = max(self.params.processes, len(devices))
        base = devices or [job.device]
        return [base[i % len(base)] for i in range(count)]

    def describe(self) -> str:
        devices, processes = self.params.devices, self.params.processes
        if len(devices) > 1 or processes > 1:
            where = ", ".join(devices) if devices else "the --device"
            return f"local: {max(processes, len(devices))} processes ({where}) through sentence-transformers' pool"
        return "local: this process"

    def embed(self, job: EmbedJob, tasks: Sequence[ShardTask],
              progress: Callable[[int], None]) -> Iterator[tuple[ShardTask, ShardVectors]]:
        targets = self.targets(job)
        device = self.params.devices[0] if len(self.params.devices) == 1 else job.device
        model = job.load_model("cpu" if targets else device)
        pool: Any = None
        if targets:
            with _threads_per_process(targets):
                pool = model.start_multi_process_pool(targets)
        try:
            for task in tasks:
                texts = shard_texts(task.texts)
                parts = []
                for start in range(0, len(texts), job.chunk):
                    parts.append(job.encode(model, texts[start : start + job.chunk], pool=pool))
                    progress(len(parts[-1].vectors))
                yield task, _joined(parts, job)
        finally:
            if pool is not None:
                model.stop_multi_process_pool(pool)


@contextlib.contextmanager
def _threads_per_process(targets: list[str]) -> Iterator[None]:
    """Processes on the CPU share its cores: each gets its share as torch's thread count (read
    from ``OMP_NUM_THREADS`` when a spawned process starts torch), instead of every process
    starting a thread per core and all of them fighting over the same cores."""
    on_cpu = sum(1 for t in targets if t.split(":")[0] == "cpu")
    if not on_cpu:
        yield
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    names = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
    saved = {name: os.environ.get(name) for name in names}
    for name in names:
        os.environ[name] = str(max(1, cores // on_cpu))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _joined(parts: list[ShardVectors], job: EmbedJob) -> ShardVectors:
    import numpy as np

    if not parts:
        return ShardVectors(np.zeros((0, job.full_dim), job.dtype), np.zeros(0, bool))
    return ShardVectors(np.concatenate([p.vectors for p in parts]), np.concatenate([p.over_length for p in parts]))


@hookimpl
def register_executors(register):
    register(Local)
