"""The plan's reader of parent circuits (``plan._Parents``) is reopened when its mapped pages have grown, not
on every task when something else in the process maps files (a library loaded mid-run: numba's LLVM is ~40 MiB
of file-backed pages). Real enumeration runs in this process; another mapping is made mid-run by the progress
callback, as a user's code running beside ``generate`` would."""

from __future__ import annotations

import mmap
from pathlib import Path

import pytest

import unitarium
import unitarium._run.plan as plan


class _Counted(plan.Dataset):  # type: ignore[misc,valid-type]
    opened = 0

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        type(self).opened += 1
        super().__init__(*args, **kwargs)


def test_other_file_backed_pages_do_not_reopen_the_parent_reader_every_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = unitarium.make_spec(gates="h,t,cx", qubits=2, max_length=6, task_size=64)
    monkeypatch.setattr(plan, "Dataset", _Counted)
    _Counted.opened = 0
    unitarium.generate(tmp_path / "plain.db", spec, workers=1)
    plain = _Counted.opened

    other = tmp_path / "library.bin"
    other.write_bytes(b"\1" * (3 * plan.PARENT_PAGES))
    held: list[mmap.mmap] = []

    def map_a_library(progress: unitarium.Progress) -> None:  # once, mid-run: its pages stay resident to the end
        if not held and progress.records > 1000:
            with other.open("rb") as f:
                held.append(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))
            sum(held[0][k] for k in range(0, len(held[0]), mmap.PAGESIZE))  # touch every page

    _Counted.opened = 0
    unitarium.generate(tmp_path / "beside.db", spec, workers=1, progress=map_a_library)
    held[0].close()
    assert held, "the progress callback never ran"
    assert _Counted.opened <= plain + 1, f"the parent reader opened {_Counted.opened} times (alone: {plain})"
