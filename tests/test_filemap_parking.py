"""Descriptors of a file this process holds a POSIX lock on are parked, never closed (closing one would drop
SQLite's locks: filemap's module docstring). While a lock is held all along (a writer's connection in WAL mode
holds one for the whole run), readers that come and go must reuse the parked map and descriptor, not park one
more each time: a run of 1,121 tasks had 2,241 parked and 3,370 open descriptors (and read /proc/locks once per
parked item at every acquire) before."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import unitarium
from unitarium._storage import filemap


def test_readers_coming_and_going_under_a_held_lock_park_one_map_and_one_descriptor(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    unitarium.generate(path, unitarium.make_spec(gates="h,t,cx", qubits=2, count=5000, length="1:8"), workers=1)
    holder = sqlite3.connect(path)  # a connection of this process holding a POSIX lock on the file
    holder.execute("BEGIN")
    holder.execute("SELECT count(*) FROM meta").fetchall()
    key = (os.stat(path).st_dev, os.stat(path).st_ino)
    try:
        assert filemap._locked_here(key) is True
        fds = 0
        for k in range(200):
            if k == 1:
                fds = len(os.listdir("/proc/self/fd"))  # (after the first reader came and went)
            assert filemap.read_header(path)[0].startswith(b"SQLite format 3")
            mapped = filemap.acquire(path)
            assert mapped is not None
            filemap.release(mapped)
        mine = [item for item, k in filemap._PARKED if k == key]
        assert len(mine) <= 2, f"{len(mine)} maps and descriptors of one file parked"
        assert len(os.listdir("/proc/self/fd")) <= fds
    finally:
        holder.rollback()
        holder.close()
    filemap.settle()
    assert not [item for item, k in filemap._PARKED if k == key], "still parked once the lock is gone"
