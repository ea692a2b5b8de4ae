"""The data side: what a data source hands the runner, and the one split that keeps evaluation
out of training.

``types``            row formats, the IR set, the request and the bundle a source returns
``split``            the query split: the evaluation split a source makes, the validation split the
                     runner carves, and the leak check between them and training
``near_duplicates``  evaluation texts with a near-copy in training (MinHash, no model)
``tables``           reading a source's tables (local files or Hub datasets) through ``datasets``
``files``            the line-by-line checks of a local data file (what ``validate`` reports)
``corpus``           reading one corpus file for ``index``/``embed`` (streamed, checked per row)
``corpora``          a corpus as one file, a folder or a pattern of files

Plugins import what they need from this package (``from mrl_plugins.data import DataBundle``);
nothing here imports ``datasets`` or torch at module level.
"""

from .near_duplicates import NearDuplicates, find_near_duplicates
from .split import Split, find_leaks, held_out_problems, seeded_sample, seeded_split, split_by_query
from .tables import builder_for, open_dataset, read_table, require_columns
from .types import ROW_COLUMNS, DataBundle, DataRequest, IRSet, IRSetError, RowFormat, normalise_text, rows_to_dataset

__all__ = [
    "ROW_COLUMNS", "DataBundle", "DataRequest", "IRSet", "IRSetError", "NearDuplicates", "RowFormat", "Split",
    "builder_for", "find_leaks", "find_near_duplicates", "held_out_problems", "normalise_text", "open_dataset",
    "read_table", "require_columns", "rows_to_dataset", "seeded_sample", "seeded_split", "split_by_query",
]
