"""A unique run's key partitions as Ray actors: the Ray engine's :data:`~.partitions.PartitionsFactory`.

With ``--engine ray --partitions P`` (``P > 1``) each partition is a plain Ray actor, one per partition:
a :class:`~.partition.KeyPartition`, the same answers to the same messages as a local partition's
process. An actor reserves no CPU (a partition's work per candidate is a fraction of a worker's, and
a reserved fraction would cost a whole task slot on its node) and is placed round-robin on the nodes
that run tasks (those the engine's probe saw writing the dataset directory: :func:`.ray.task_nodes`).
It owns its store at ``DATA/keys/part-<i>-of-<P>/``, so the dataset directory must be on storage every
node mounts at the same path, as for segments (docs/cluster.md). Only keys and masks travel.

Ray runs a plain actor's calls from one caller in submission order, so each partition still answers in
task order. A message without an answer (``drop``, ``add``, ``committed``) is not waited for; its
failure surfaces at the partition's next reply, as one line. An actor gone (``ray.kill``, its worker
killed, its node lost) is one :class:`WorkerError` naming the partition; the run resumes as after a
local partition process's death (the store is rebuilt from the dataset where it cannot be trusted).
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .._errors import WorkerError
from .partition import SILENT, KeyPartition, PartitionArgs
from .partitions import Failed
from .ray import import_ray, task_nodes
from .wire import WAIT_S

if TYPE_CHECKING:
    from .progress import StallWatch

__all__ = ["RayActors"]

_CLOSE_S = 10.0
"""How long closing waits for the actors to close their stores before they are killed."""


class RayActors:
    """The partitions of a run as Ray actors on the cluster the engine connected to (see the module)."""

    def __init__(self, failed: Failed, watch: StallWatch | None) -> None:
        self.failed, self.watch = failed, watch
        self.ray = import_ray()
        self.actors: list[Any] = []
        self.sent: list[deque[tuple[Any, bool]]] = []
        """Per partition, the calls not yet collected, and whether each has an answer."""

    def start(self, args: Sequence[PartitionArgs]) -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        nodes = task_nodes(self.ray)
        actor = self.ray.remote(KeyPartition)
        for one in args:
            place = NodeAffinitySchedulingStrategy(nodes[one.index % len(nodes)], soft=False) if nodes else "DEFAULT"
            options = dict(num_cpus=0, max_restarts=0, max_task_retries=0, scheduling_strategy=place)
            self.actors.append(actor.options(**options).remote(one))
            self.sent.append(deque())

    def _died(self, i: int) -> WorkerError:
        return self.failed(f"key partition {i} (a Ray actor) died (killed, out of memory, or its node lost?)")

    def send(self, i: int, message: tuple[Any, ...]) -> None:
        try:
            call = self.actors[i].handle.remote(message)
        except self.ray.exceptions.RayError:
            raise self._died(i) from None
        self.sent[i].append((call, message[0] not in SILENT))

    def reply(self, i: int) -> Any:
        while True:
            call, answers = self.sent[i].popleft()
            result = self._get(i, call)
            if answers:
                return result

    def _get(self, i: int, call: Any) -> Any:
        """The result of ``call`` to partition ``i``, waited for under the watch (a stop ends the wait)."""
        ray, watch = self.ray, self.watch
        if watch is not None:
            watch.arrived()
            while not ray.wait([call], timeout=WAIT_S)[0]:
                watch.check(f"key partition {i} (a Ray actor)", [])
        try:
            return ray.get(call)
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause if isinstance(getattr(exc, "cause", None), BaseException) else exc
            detail = (str(cause).strip().splitlines() or [""])[0]
            raise self.failed(f"key partition {i} failed: {type(cause).__name__}: {detail}") from None
        except ray.exceptions.RayError:
            raise self._died(i) from None

    def close(self) -> None:
        """Let the actors close their stores (a bounded while), then end them."""
        ray, actors = self.ray, self.actors
        self.actors, self.sent = [], []
        if not actors or not ray.is_initialized():
            return
        with contextlib.suppress(Exception):
            closing = [a.close.remote() for a in actors]
            ray.wait(closing, num_returns=len(closing), timeout=_CLOSE_S)
        for a in actors:
            with contextlib.suppress(Exception):
                ray.kill(a, no_restart=True)
