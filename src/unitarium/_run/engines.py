"""The engines: what runs a run's tasks under the one driver (:mod:`.driver`).

An engine is a context manager that yields an :data:`~.driver.Execute` (run the plan's tasks for the
driver) and says which layouts it writes. The driver, the plan, the manifest, dedup, progress, stop
and resume are the same for every engine (:func:`.engine.drive`). Adding one is a module with a
``start`` context manager and one line in :data:`ENGINES` (with, optionally, what holds a unique run's
key partitions: local processes by default, Ray actors for Ray); bringing an executor needs no engine at all:
``unitarium.generate(..., executor=...)`` takes any :class:`concurrent.futures.Executor` (docs/executors.md).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from contextlib import AbstractContextManager
from dataclasses import dataclass

from .._spec.spec import Spec
from .._storage.layout import Layout
from . import jobs, ray
from .actors import RayActors
from .directory import run_directory, segment_seconds
from .driver import Execute
from .file import run_file
from .partitions import LocalProcesses, PartitionsFactory
from .plan import check_workers, default_workers

__all__ = ["ENGINES", "Engine", "Request"]


@dataclass(frozen=True)
class Request:
    """What a run asks of its engine."""

    layout: Layout
    spec: Spec
    workers: int | None
    ray_address: str | None = None
    executor: Executor | None = None


@dataclass(frozen=True)
class Engine:
    """``start(request)``: a context manager yielding the engine's :data:`~.driver.Execute`, entered
    before the driver's signal guard and the writer (an engine may connect to a cluster first)."""

    layouts: tuple[str, ...]
    start: Callable[[Request], AbstractContextManager[Execute]]
    option: str
    """How the user asks for it (messages)."""
    partitions: PartitionsFactory = LocalProcesses
    """What holds a unique run's key partitions when there are several (called inside ``start``)."""


@contextlib.contextmanager
def _local(request: Request) -> Iterator[Execute]:
    """Worker processes of this machine (one: this process). A file: default cores - 1, the writer
    takes the last; a directory: one per core, each writing its own segments."""
    directory = request.layout.kind == "directory"
    workers = request.workers
    count = check_workers(request.spec, (default_workers() + directory) if workers is None else workers)
    if directory:
        seconds = segment_seconds()  # before anything is opened
        yield lambda driver, tasks: run_directory(driver, tasks, count, seconds)
    else:
        yield lambda driver, tasks: run_file(driver, tasks, count)


ENGINES: dict[str, Engine] = {
    "local": Engine(("file", "directory"), _local, "--engine local"),
    "ray": Engine(("directory",), lambda r: ray.start(r.ray_address, r.workers), "--engine ray", RayActors),
    "executor": Engine(("directory",), lambda r: jobs.start(r.executor, r.workers), "executor="),  # type: ignore[arg-type]
}
"""The engines by name (``executor`` is what ``executor=`` selects)."""
