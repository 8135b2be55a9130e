"""Training data and benchmark readers: every reader produces ``rethinker.records.Record``.

- ``rethinker.data.io``: ``read_records`` / ``write_records`` (parquet, JSONL, ``datasets``
  folders, column mappings), ``LoadResult`` with counted skips.
- ``rethinker.data.virl39k``: ``load_virl39k`` (the method's training set).
- ``rethinker.data.benchmarks``: ``BENCHMARKS[name](path, split=None)``.
- ``rethinker.data.curate``: statistics and selection (``rethinker data stats`` / ``select``).
"""

from .io import DataError, LoadResult, Skip, read_records, write_records

__all__ = ["DataError", "LoadResult", "Skip", "read_records", "write_records"]
