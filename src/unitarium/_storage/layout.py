"""Layouts: where a dataset's manifest and blocks live, composed from the same parts.

A **file** is a layout of one shard that is its own manifest: the writer (:class:`FileWriter`) holds
the :class:`.Manifest` and commits each task's block into the same file, in the same transaction
that lists the task. A **directory** is a manifest (``DIR/manifest.db``) plus immutable segments
(``DIR/shards/*.db``) that workers write and publish (:mod:`.shards`, :class:`.DirectoryWriter`).
:func:`layout_of` is the one place that tells them apart by their path; everything else asks the
layout (its ``kind``, ``manifest``, ``writer``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .._core.codec import BlockFormat
from .._spec.sources import TaskResult
from .._spec.spec import Spec
from .manifest import Manifest, ManifestHolder
from .rows import insert_block, insert_lookup
from .shards import MANIFEST, DirectoryWriter, is_directory_path

__all__ = ["DirectoryLayout", "FileLayout", "FileWriter", "Layout", "layout_of"]


class FileWriter(ManifestHolder):
    """The writer of a dataset file: its :class:`.Manifest` is the file, and a committed task's block
    goes into it in the transaction that lists the task (shard 0)."""

    def __init__(
        self, path: str | os.PathLike[str], spec: Spec, *, journal: str = "wal", fmt: BlockFormat | None = None
    ):
        self.manifest = Manifest(path, spec, kind="file", journal=journal, fmt=fmt)
        self.path, self.spec, self.fmt = self.manifest.path, spec, self.manifest.fmt
        self.location = self.path
        """The path a reader of this dataset opens."""

    def commit(self, results: Sequence[TaskResult]) -> None:
        """Commit whole tasks (their blocks, rows and summary) in one transaction."""
        with self.manifest.transaction() as conn:
            self.manifest.list_tasks(conn, [(r, 0) for r in results])
            for r in results:
                insert_block(conn, self.fmt, r, lookup=False)
            insert_lookup(conn, results)  # sorted over the whole commit


@dataclass(frozen=True)
class FileLayout:
    """One SQLite file: manifest and blocks."""

    path: Path
    kind = "file"

    @property
    def manifest(self) -> Path:
        return self.path

    def writer(self, spec: Spec, *, journal: str = "wal", fmt: BlockFormat | None = None) -> FileWriter:
        return FileWriter(self.path, spec, journal=journal, fmt=fmt)


@dataclass(frozen=True)
class DirectoryLayout:
    """A directory: ``manifest.db`` and the segments under ``shards/``."""

    path: Path
    kind = "directory"

    @property
    def manifest(self) -> Path:
        return self.path / MANIFEST

    def writer(self, spec: Spec, *, journal: str = "wal", fmt: BlockFormat | None = None) -> DirectoryWriter:
        if fmt is not None:
            raise ValueError("a directory is written by its run: it takes no block format of another dataset")
        return DirectoryWriter(self.path, spec, journal=journal)


Layout = FileLayout | DirectoryLayout


def layout_of(path: str | os.PathLike[str]) -> Layout:
    """The layout a path names: a directory if it ends with ``/`` or is an existing directory, else a file."""
    return DirectoryLayout(Path(path)) if is_directory_path(path) else FileLayout(Path(path))
