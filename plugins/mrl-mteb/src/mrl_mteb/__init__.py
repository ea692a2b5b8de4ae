"""Evaluation task ``mteb``: any MTEB task at every width of a run, through the ``mteb`` package.

Each of the run's models is wrapped as an MTEB encoder that truncates to one width and
re-normalises (:class:`~mrl_mteb.encoder.WidthEncoder`); ``mteb.evaluate`` then runs the task
unchanged, once per width, with the model's full-width embeddings encoded once and sliced. The task
is one of MTEB's by name (its data comes from the Hugging Face Hub), an ``AbsTask`` subclass of the
user's (``module:Class``), or one of MTEB's own task types run on a local file
(:func:`~mrl_mteb.local.local_task`). Registered through the ``mrl_plugins`` entry point like any
third-party plugin: it uses only the public contract (:class:`mrl_plugins.components.Task`).
"""

from .task import Mteb, MtebParams, register_tasks

__all__ = ["Mteb", "MtebParams", "register_tasks"]
