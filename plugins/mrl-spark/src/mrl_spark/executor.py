"""The Spark executor (see the package docstring).

How the work moves, and why:

- **Where Spark runs.** With no ``address`` a local Spark (``local[N]``, N = ``local_cores``,
  default every core) is started for the embed and stopped after it; ``--address
  spark://host:7077`` (or any Spark master URL: ``yarn``, ``k8s://…``) joins a cluster. Inside an
  application that already has a Spark session (a notebook, ``spark-submit``), that session is
  used and left running.
- **The model ships once per executor**: a local model folder goes to every executor with
  ``SparkContext.addFile`` (fetched once per executor, read with ``SparkFiles.get``); each Python
  worker loads it once and keeps it for its later tasks (Spark reuses Python workers). A Hub id is
  loaded by each executor from the Hub (or its cache).
- **The texts travel in the DataFrame**, not by path: the driver reads the shard texts the core
  wrote, a window of units at a time, and hands them to Spark as rows (``shard``, ``start``,
  ``texts``), so the executors need no shared filesystem and the embeddings folder lives on the
  driver alone (the Ray executor, which reads shard files by path, needs one).
- **The units are the local executor's**: each shard cut into ``job.chunk`` texts, each unit
  encoded by :meth:`EmbedJob.encode` (which sorts it by length and batches it) inside
  ``mapInPandas``. The same units through the same code give the same bytes, so the folder equals
  the local executor's byte for byte, whatever the partitioning.
- **One window at a time.** Each window (``window`` units, default twice the cluster's default
  parallelism) is one Spark job whose vectors are collected to the driver; a shard is yielded to the
  core (written, recorded) as soon as all its units are back, so ``--resume`` redoes at most the
  shards of the window a kill interrupted. The cost: a window waits for its slowest unit.
- **Threads.** Each task runs torch on ``cpus_per_task`` threads (``spark.task.cpus``), so
  ``local[N]`` runs N single-threaded encoders instead of N encoders fighting over every core.
  ``gpus_per_task > 0`` asks Spark for that share of a GPU per task
  (``spark.task.resource.gpu.amount``; the cluster declares its GPUs) and encodes on ``cuda``:
  written for GPU clusters, not exercised by this project's CI, which has no GPU.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from mrl_plugins.components import Executor, Params
from mrl_plugins.embed import EmbedJob, ShardTask, ShardVectors
from mrl_plugins.embed.job import shard_texts
from mrl_plugins.errors import UserError
from mrl_plugins.hookspecs import hookimpl

logger = logging.getLogger("mrl_plugins")
LOG4J = Path(__file__).with_name("log4j2.properties")
"""Spark's JVM logs errors only: its INFO and WARN lines would drown the command's progress."""
RESULT_SCHEMA = "shard int, start int, vectors binary, over binary"


class SparkParams(Params):
    address: str | None = Field(None, description="The Spark master to join (spark://host:7077, yarn, k8s://…); "
                                "default: start a local Spark (local[local_cores]) for the embed.")
    local_cores: int | None = Field(None, ge=1, description="Cores of the local Spark started without an address "
                                    "(default: all of this machine's).")
    cpus_per_task: int = Field(1, ge=1, description="CPUs each task holds (spark.task.cpus): its torch threads.")
    gpus_per_task: float = Field(0.0, ge=0, description="GPUs each task holds (spark.task.resource.gpu.amount); "
                                 "> 0 encodes on cuda.")
    window: int | None = Field(None, ge=1, description="Units (chunks of texts) per Spark job; default twice the "
                               "default parallelism.")
    conf: dict[str, str] = Field(default_factory=dict, description="More Spark settings for a session this "
                                 "executor starts, e.g. {\"spark.executor.memory\" = \"8g\"}.")


@dataclass(frozen=True)
class Unit:
    """A chunk of one shard's texts: what one ``EmbedJob.encode`` call of the local executor takes."""

    shard: int
    start: int
    texts: list[str]


def units_of(task: ShardTask, chunk: int) -> Iterator[Unit]:
    """A shard's texts cut as the local executor cuts them."""
    texts = shard_texts(task.texts)
    for start in range(0, len(texts), chunk):
        yield Unit(task.index, start, texts[start : start + chunk])


def encoder(job: EmbedJob, model_file: str | None, threads: int,
            device: str) -> Callable[[Iterator[Any]], Iterator[Any]]:
    """The function ``mapInPandas`` runs on the executors: each row a unit, out its vectors' bytes."""

    def encode(batches: Iterator[Any]) -> Iterator[Any]:
        import pandas as pd
        import torch

        torch.set_num_threads(threads)
        if model_file is not None:
            from pyspark import SparkFiles

            local = replace(job, model=SparkFiles.get(model_file))
        else:
            local = job
        model = local.load_model(device)  # once per Python worker: a reused worker keeps it
        for batch in batches:
            rows = []
            for shard, start, texts in zip(batch["shard"], batch["start"], batch["texts"]):
                result = local.encode(model, [str(t) for t in texts])
                rows.append((int(shard), int(start), result.vectors.tobytes(),
                             np.asarray(result.over_length, dtype=bool).tobytes()))
            yield pd.DataFrame(rows, columns=["shard", "start", "vectors", "over"])

    return encode


class Spark(Executor[SparkParams]):
    """Apache Spark (a local[N] instance or a cluster): mapInPandas encodes the shards' chunks."""

    name = "spark"
    Params = SparkParams

    def describe(self) -> str:
        return f"spark: mapInPandas on {self.params.address or self._local_master()}"

    def _local_master(self) -> str:
        return f"local[{self.params.local_cores or '*'}]"

    def embed(self, job: EmbedJob, tasks: Sequence[ShardTask],
              progress: Callable[[int], None]) -> Iterator[tuple[ShardTask, ShardVectors]]:
        for task in tasks:  # nothing to encode: an empty shard is done as it is
            if task.rows == 0:
                yield task, ShardVectors(np.zeros((0, job.full_dim), job.dtype), np.zeros(0, bool))
        work = [t for t in tasks if t.rows]
        if not work:
            return
        from pyspark.sql import SparkSession

        active = SparkSession.getActiveSession()
        spark = active if active is not None else self._start()
        try:
            yield from self._embed(spark, job, work, progress)
        finally:
            if active is None:
                spark.stop()

    def _start(self) -> Any:
        from pyspark.sql import SparkSession

        address = self.params.address
        reachable(address)
        builder = (SparkSession.builder.master(address or self._local_master()).appName("mrl-run embed")
                   .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
                   .config("spark.sql.execution.arrow.pyspark.enabled", "true")
                   .config("spark.task.cpus", str(self.params.cpus_per_task)))
        if self.params.gpus_per_task:
            builder = builder.config("spark.task.resource.gpu.amount", str(self.params.gpus_per_task))
        for key, value in self.params.conf.items():
            builder = builder.config(key, value)
        # the workers run this interpreter (its packages: torch, the model code) unless told otherwise;
        # the JVM spark-submit starts reads its log configuration from SPARK_SUBMIT_OPTS (a driver's
        # extraJavaOptions set here would come after that JVM started)
        logging.getLogger("py4j").setLevel(logging.WARNING)  # "Closing down clientserver connection"
        warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
        log4j = f"-Dlog4j2.configurationFile={LOG4J.as_uri()}"
        submit = " ".join(filter(None, [os.environ.get("SPARK_SUBMIT_OPTS"), log4j]))
        python = os.environ.get("PYSPARK_PYTHON") or sys.executable
        with _env("PYSPARK_PYTHON", python), _env("SPARK_SUBMIT_OPTS", submit):
            try:
                return builder.getOrCreate()
            except Exception as exc:  # the JVM did not start, or the master refused us
                detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                where = f"the Spark master at {address}" if address else "a local Spark"
                raise UserError(f"--executor spark: could not start {where} ({detail}). Spark needs a Java 17+ "
                                "runtime (java on the PATH or JAVA_HOME; on Debian: apt-get install "
                                "openjdk-17-jre-headless); check --address (spark://HOST:7077) when joining a "
                                "cluster.") from None

    def _embed(self, spark: Any, job: EmbedJob, work: Sequence[ShardTask],
               progress: Callable[[int], None]) -> Iterator[tuple[ShardTask, ShardVectors]]:
        import pandas as pd

        context = spark.sparkContext
        model_file = None
        folder = Path(job.model)
        if folder.is_dir():  # shipped once to every executor
            context.addFile(str(folder.resolve()), recursive=True)
            model_file = folder.resolve().name
        device = "cuda" if self.params.gpus_per_task else "cpu"
        encode = encoder(job, model_file, self.params.cpus_per_task, device)
        window = self.params.window or 2 * max(1, int(context.defaultParallelism))
        by_index = {t.index: t for t in work}
        expected = {t.index: -(-t.rows // job.chunk) for t in work}
        parts: dict[int, dict[int, tuple[np.ndarray, np.ndarray]]] = {}

        def run(units: list[Unit]) -> Iterator[tuple[ShardTask, ShardVectors]]:
            frame = pd.DataFrame({"shard": [u.shard for u in units], "start": [u.start for u in units],
                                  "texts": [u.texts for u in units]})
            df = spark.createDataFrame(frame, schema="shard int, start int, texts array<string>")
            for row in df.mapInPandas(encode, RESULT_SCHEMA).collect():
                vectors = np.frombuffer(row["vectors"], dtype=job.dtype).reshape(-1, job.full_dim)
                over = np.frombuffer(row["over"], dtype=bool)
                parts.setdefault(row["shard"], {})[row["start"]] = (vectors, over)
            progress(sum(len(u.texts) for u in units))
            for shard in sorted(parts):
                if len(parts[shard]) == expected[shard]:
                    done = [parts[shard][start] for start in sorted(parts[shard])]
                    del parts[shard]
                    yield by_index[shard], ShardVectors(np.concatenate([v for v, _ in done]),
                                                        np.concatenate([o for _, o in done]))

        pending: list[Unit] = []
        for task in work:
            for unit in units_of(task, job.chunk):
                pending.append(unit)
                if len(pending) >= window:
                    yield from run(pending)
                    pending = []
        if pending:
            yield from run(pending)
        if parts:
            raise RuntimeError(f"Spark returned part of shard(s) {sorted(parts)}")


@contextlib.contextmanager
def _env(name: str, value: str) -> Iterator[None]:
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def reachable(address: str | None, timeout: float = 10.0) -> None:
    """Refuse a ``spark://`` master nothing answers at, in seconds: Spark itself retries for a
    minute before it gives up. Other master URLs (``local[…]``, ``yarn``, ``k8s://…``) are Spark's
    to check."""
    if not address or not address.startswith("spark://"):
        return
    first = address.removeprefix("spark://").split(",")[0].split("/")[0]
    host, _, port = first.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--address {address}: expected spark://HOST:PORT (e.g. spark://head:7077), or leave it out "
                        "for a local Spark.")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise UserError(f"--executor spark: cannot reach the Spark master at {address} ({exc.strerror or exc}); "
                        "check --address (spark://HOST:7077) and that the master is up.") from None


@hookimpl
def register_executors(register):
    register(Spark)
