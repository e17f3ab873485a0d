"""``generate``: one run of a spec into a layout, by an engine, under the one driver.

:func:`drive` is the run, the same for every engine and layout: open the layout's writer (the lock,
the spec check), plan the tasks from the committed prefix, let the engine execute them for the
:class:`.Driver` (dedup, commits in task order, progress, stop and resume), mark the dataset complete.
The engines are in :mod:`.engines`; the layouts in :mod:`.._storage.layout`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from .._core.compiled import jit_mode
from .._errors import SpecError
from .._spec.spec import Spec
from .._storage.keystore import memory_budget
from .._storage.layout import layout_of
from .authority import check_partitions
from .driver import Driver
from .engines import ENGINES, Request
from .plan import adopt_stored, check_size, plan
from .progress import Progress, Summary, announce
from .signals import Stop

__all__ = ["drive", "generate"]


def generate(
    path: str | os.PathLike[str],
    spec: Spec,
    *,
    workers: int | None = None,
    progress: Callable[[Progress], None] | None = None,
    journal: str = "wal",
    engine: str = "local",
    ray_address: str | None = None,
    executor: Executor | None = None,
    memory: int | str | None = None,
    partitions: int | None = None,
) -> Summary:
    """Generate (or resume) the dataset ``spec`` into the SQLite file ``path``, or into the
    sharded dataset directory ``path`` (a path ending in ``/``, or an existing directory).

    ``workers`` processes compute tasks (default: a file: cores - 1, the writer takes the last;
    a directory: one per core, each writing its own segments; 1 computes in this process).
    The content depends only on ``spec``, and is the same in a file and in a directory. Raises :class:`Interrupted` on
    SIGINT/SIGTERM, :class:`WorkerError` if a worker fails; both leave the file resumable.
    ``journal="delete"`` writes with a rollback journal instead of WAL, for network
    filesystems (where WAL is refused); it is not part of the spec.

    ``engine="ray"`` runs the tasks on Ray (a directory only; :mod:`.ray`): on the cluster at
    ``ray_address`` (or ``RAY_ADDRESS``), else on a local Ray started for the run; ``workers`` then
    caps the Ray tasks in flight (default: the cluster's CPUs). The content is the same.

    ``executor`` runs the tasks on any :class:`concurrent.futures.Executor` the caller owns (and
    shuts down): the standard library's ``ProcessPoolExecutor``, Dask's ``Client.get_executor()``,
    ``mpi4py.futures``, loky (a directory only; :mod:`.jobs`); ``workers`` caps the jobs in
    flight (default: one per core of this machine). The content is the same.

    ``memory`` bounds the keys of a unique run in RAM: bytes, or a size such as ``"2GB"``,
    ``"500MiB"``, ``"25%"`` (of this machine's memory; the default); past a quarter of it the keys
    are spilled to sorted runs on disk beside the dataset (``PATH.keys/`` for a file, ``PATH/keys/``
    for a directory), which resume with it and are deleted when it is complete. Never changes the content.

    ``partitions`` splits a unique run's key authority by key range into that many processes (each
    with ``memory / partitions``; 1: in this process; with ``engine="ray"``: Ray actors). Default: one
    per 8 workers (``workers``, else this machine's cores). Never changes the content.
    """
    jit_mode()  # (UNITARIUM_JIT checked before anything is opened)
    summary, _ = drive(
        path,
        spec,
        engine,
        workers=workers,
        progress=progress,
        journal=journal,
        ray_address=ray_address,
        executor=executor,
        memory=memory,
        partitions=partitions,
    )
    return summary


def drive(
    path: str | os.PathLike[str],
    spec: Spec,
    engine: str = "local",
    *,
    workers: int | None = None,
    progress: Callable[[Progress], None] | None = None,
    journal: str = "wal",
    ray_address: str | None = None,
    executor: Executor | None = None,
    memory: int | str | None = None,
    partitions: int | None = None,
) -> tuple[Summary, Any]:
    """The run behind :func:`generate`; also returns the engine's statistics (jobs: :class:`.RunStats`)."""
    budget = memory_budget(memory)  # garbage or too little: refused before anything is opened
    parts = check_partitions(partitions, workers, budget)
    layout = layout_of(path)
    spec = adopt_stored(path, spec)  # a resumed dataset keeps the kernel and keys it was made with
    note = check_size(layout.path, spec)
    if executor is not None:
        if engine != "local" or ray_address is not None:
            raise SpecError("executor= runs the tasks itself: leave engine and ray_address out")
        engine = "executor"
    if engine not in ENGINES or (engine == "executor" and executor is None):
        raise SpecError(f"--engine {engine!r} is not supported: use local (the default) or ray")
    if ray_address is not None and engine != "ray":
        raise SpecError("--ray-address goes with --engine ray")
    chosen = ENGINES[engine]
    if layout.kind not in chosen.layouts:
        raise SpecError(
            f"{chosen.option} writes a sharded dataset directory, and {os.fspath(path)!r} is a file path: "
            "end it with / (e.g. runs/cliff/)"
        )
    request = Request(layout, spec, workers, ray_address, executor)
    t0 = time.monotonic()
    with chosen.start(request) as execute, Stop() as stop, layout.writer(spec, journal=journal) as writer:
        announce(progress, note, spec)  # the size it will reach, once the run holds the lock
        driver = Driver(writer, progress, stop, budget, parts, chosen.partitions)
        try:
            stats = execute(
                driver, plan(spec, writer.manifest, writer.manifest.tasks_done(), reader_path=writer.location)
            )
            driver.check_stop()
            driver.complete()
        finally:
            driver.close()
    new = driver.records - driver.start_records
    return Summary(os.fspath(path), driver.records, new, driver.tasks, time.monotonic() - t0, True), stats
