"""The public :class:`Dataset`: the reader (:mod:`unitarium._read`: records, bulk reads, lookup, verify,
splits) composed with the search methods (:mod:`unitarium.search`: synthesis, nearest, approximate).

The reader never imports search: the engines, exports and PyTorch datasets read through it alone,
and search takes any reader it is given. This module, above both, is the one place they meet.
"""

from __future__ import annotations

import os

from ._read.dataset import Dataset as Reader
from .search import SearchMixin

__all__ = ["Dataset", "open"]


class Dataset(Reader, SearchMixin):
    """A dataset (file or directory), read-only. ``len(ds)``, ``ds[i]``, ``ds[a:b]``,
    ``ds[[i, j]]``, ``ds.unitaries(a, b)`` or ``ds.unitaries(ids)``, ``for rec in ds``, ``ds.lookup(U)``,
    ``ds.split(...)``, ``ds.synthesize(U)``, ``ds.nearest(U, k)``, ``ds.approximate(U)``."""


def open(path: str | os.PathLike[str]) -> Dataset:
    """Open a dataset file or directory for reading (also while it is being generated)."""
    return Dataset(path)
