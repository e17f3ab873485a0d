"""Network filesystems. WAL needs memory shared by every process that opens the file, which NFS, SMB, sshfs
and the like do not provide; the writer finds the filesystem of the dataset's directory in
``/proc/self/mountinfo`` and there refuses WAL, suggesting ``--journal delete`` (a rollback journal with
``synchronous=FULL``; readers wait while a task commits). The detection is tested on a real mountinfo text
(no network mount is available to CI); the safe mode with real runs, kills and readers."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import unitarium
from unitarium._storage.sqlite import NETWORK_FILESYSTEMS, filesystem_type, parse_mountinfo

from conftest import (
    DROP_ROOT_POWERS,
    IS_ROOT,
    Snapshot,
    cli,
    integrity,
    kill_group,
    one_error_line,
    records_in,
    start_cli,
    uninterrupted,
    wait_until,
)

# A workstation: local root, NFS home with a local tmpfs inside it, an SMB share whose name has a space
# (escaped as \040), sshfs, an ext4 disk over-mounted by NFS, and /mnt/nfsdata beside /mnt/nfs.
MOUNTINFO = r"""22 28 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
23 28 0:22 / /proc rw,nosuid,nodev,noexec,relatime shared:13 - proc proc rw
28 1 253:0 / / rw,relatime shared:1 - ext4 /dev/mapper/vg-root rw,errors=remount-ro
45 28 0:40 / /home rw,relatime shared:25 - nfs4 files:/export/home rw,vers=4.2,hard,proto=tcp,sec=sys,local_lock=none
48 45 0:43 / /home/alice/scratch rw,relatime shared:28 - tmpfs tmpfs rw,size=1048576k
46 28 0:41 / /mnt/team\040share rw,relatime shared:26 - cifs //nas/team rw,vers=3.1.1,cache=strict,uid=1000
47 28 0:42 / /mnt/remote rw,nosuid,nodev,relatime shared:27 master:3 - fuse.sshfs alice@host:/data rw,user_id=1000
49 28 8:17 / /data rw,relatime - ext4 /dev/sdb1 rw
50 49 0:45 / /data rw,relatime - nfs srv:/data rw,vers=3,hard,proto=tcp
51 28 8:33 / /mnt/nfsdata rw,relatime - xfs /dev/sdc1 rw
52 28 0:47 / /mnt/nfs rw - nfs4 srv:/x rw
"""

COUNT = 20_000
ARGS = ["--gates", "clifford+t", "--qubits", "3", "--count", str(COUNT), "--length", "1:30", "--seed", "15"]


def test_parse_mountinfo() -> None:
    mounts = parse_mountinfo(MOUNTINFO + "\n\ngarbage line\n")
    assert mounts[:3] == [("/sys", "sysfs"), ("/proc", "proc"), ("/", "ext4")]
    assert ("/mnt/team share", "cifs") in mounts
    assert ("/mnt/remote", "fuse.sshfs") in mounts  # two optional fields before the separator
    assert len(mounts) == 11


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/home/alice/thesis/data.db", "nfs4"),
        ("/home", "nfs4"),
        ("/home/alice/scratch/data.db", "tmpfs"),  # a local mount inside the NFS home
        ("/mnt/team share/data.db", "cifs"),
        ("/mnt/remote/data.db", "fuse.sshfs"),
        ("/data/data.db", "nfs"),  # the later mount on /data hides the ext4 one
        ("/mnt/nfsdata/data.db", "xfs"),  # not inside /mnt/nfs
        ("/mnt/nfs/data.db", "nfs4"),
        ("/var/tmp/data.db", "ext4"),
    ],
)
def test_filesystem_type_of_a_path(path: str, kind: str) -> None:
    assert filesystem_type(path, MOUNTINFO) == kind


def test_network_filesystems_are_recognised() -> None:
    network = {"nfs", "nfs4", "cifs", "fuse.sshfs"}
    assert network <= NETWORK_FILESYSTEMS
    assert not {"ext4", "xfs", "tmpfs", "btrfs", "overlay", "zfs"} & NETWORK_FILESYSTEMS
    kinds = {filesystem_type(p, MOUNTINFO) for p in ("/home/a", "/mnt/team share/a", "/mnt/remote/a", "/data/a")}
    assert kinds <= NETWORK_FILESYSTEMS


def test_filesystem_type_on_this_machine(tmp_path: Path) -> None:
    assert filesystem_type("/proc/self") == "proc"
    kind = filesystem_type(tmp_path)
    assert isinstance(kind, str) and kind
    assert kind not in NETWORK_FILESYSTEMS, f"the test's temporary directory is on {kind}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Snapshot:
    return Snapshot.of(uninterrupted(tmp_path_factory, "wal.db", ARGS))


def journal_mode(path: Path) -> str:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        conn.close()


def test_journal_delete_gives_the_same_dataset_without_wal(tmp_path: Path, reference: Snapshot) -> None:
    path = tmp_path / "delete.db"
    cli("generate", path, *ARGS, "--journal", "delete", "--quiet")
    assert journal_mode(path) == "delete"
    assert not Path(f"{path}-wal").exists()
    assert Snapshot.of(path).equals(reference)
    with unitarium.open(path) as ds:
        assert "journal" not in json.dumps(ds.meta["spec"])  # not part of the spec...
    cli("generate", path, *ARGS, "--quiet")  # ...so the default (WAL) resumes it, and vice versa
    assert journal_mode(path) == "delete"  # (a complete dataset leaves WAL when its writer closes)
    assert not Path(f"{path}-wal").exists() and not Path(f"{path}-shm").exists()
    cli("generate", path, *ARGS, "--journal", "delete", "--quiet")
    assert journal_mode(path) == "delete"
    assert integrity(path) == "ok" and Snapshot.of(path).equals(reference)


@pytest.mark.slow
@pytest.mark.parametrize("moment", [0.1, 0.5])
def test_journal_delete_survives_kill_9_and_resumes(tmp_path: Path, reference: Snapshot, moment: float) -> None:
    path = tmp_path / "delete.db"
    proc = start_cli("generate", path, *ARGS, "--journal", "delete", "--workers", "2", "--quiet")
    try:
        wait_until(lambda: records_in(path) >= moment * COUNT, timeout=120, what="records")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            kill_group(proc)
    assert integrity(path) == "ok"
    assert Snapshot.of(path).is_prefix_of(reference)
    cli("generate", path, *ARGS, "--journal", "delete", "--quiet")
    assert integrity(path) == "ok" and Snapshot.of(path).equals(reference)


READER = r"""
import sys, time, unitarium
path, expected = sys.argv[1], int(sys.argv[2])
deadline, counts = time.monotonic() + 240, []
while time.monotonic() < deadline:
    try:
        ds = unitarium.open(path)
    except unitarium.DatasetMissingError:
        time.sleep(0.002)
        continue
    with ds:
        n = len(ds)
        if n:
            ds[n - 1]
        counts.append(n)
        if ds.complete and n == expected:
            break
print(len(counts), counts[-1])
"""


@pytest.mark.slow
def test_readers_wait_instead_of_failing_in_journal_delete_mode(tmp_path: Path, reference: Snapshot) -> None:
    path = tmp_path / "delete.db"
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(path), str(COUNT)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        cli("generate", path, *ARGS, "--journal", "delete", "--workers", "2", "--quiet")
        out, err = reader.communicate(timeout=240)
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()
    assert reader.returncode == 0 and err == b"", err.decode()
    assert out.split()[1] == str(COUNT).encode()
    assert Snapshot.of(path).equals(reference)


def test_an_unknown_journal_mode_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    proc = cli("generate", path, *ARGS, "--journal", "memory", check=False)
    assert proc.returncode == 2
    assert "--journal" in one_error_line(proc.stderr)
    spec = unitarium.make_spec(gates="h", qubits=1, count=1, length=1)
    with pytest.raises(unitarium.SpecError, match="journal mode 'memory'"):
        unitarium.generate(path, spec, journal="memory")
    assert not path.exists()


KILLED_MID_COMMIT = r"""
import os, sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA cache_size=2")  # (the commit's pages spill into the file before it ends)
conn.execute("BEGIN IMMEDIATE")
conn.execute("UPDATE blocks SET codes = zeroblob(length(codes))")
conn.execute("DELETE FROM lookup")
os.kill(os.getpid(), 9)
"""


def test_a_hot_journal_of_a_writer_killed_mid_commit_is_rolled_back_by_readers(tmp_path: Path) -> None:
    """A writer killed mid-commit in rollback-journal mode leaves the file with half a commit in it and the
    pages it overwrote in a hot ``-journal``. SQLite rolls that back on the next read of a connection that may
    write; readers are read-only, so they used to refuse the file ("check the permissions"). They roll it back
    now, and where the file cannot be written they say so in one line and change nothing."""
    path = tmp_path / "d" / "x.db"
    path.parent.mkdir()
    args = ["--gates", "clifford+t", "--qubits", "2", "--count", "20000", "--length", "1:10", "--seed", "1"]
    cli("generate", path, *args, "--journal", "delete", "--unique", "--quiet")
    before = Snapshot.of(path)
    crash = subprocess.run([sys.executable, "-c", KILLED_MID_COMMIT, str(path)], check=False)
    assert crash.returncode == -signal.SIGKILL
    journal = Path(f"{path}-journal")
    assert journal.stat().st_size > 0
    with pytest.raises(sqlite3.OperationalError, match="readonly"):  # hot: plain read-only SQLite refuses it
        sqlite3.connect(f"file:{path}?mode=ro", uri=True).execute("SELECT count(*) FROM blocks").fetchone()
    # where it cannot be written, one line, nothing changed
    stamp = (path.read_bytes(), journal.read_bytes())
    os.chmod(path.parent, 0o555)
    os.chmod(path, 0o444)
    try:
        proc = subprocess.run(
            [*(DROP_ROOT_POWERS if IS_ROOT else []), sys.executable, "-m", "unitarium", "info", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        os.chmod(path.parent, 0o755)
        os.chmod(path, 0o644)
    assert proc.returncode != 0
    assert "interrupted writer" in one_error_line(proc.stderr)
    assert (path.read_bytes(), journal.read_bytes()) == stamp
    # where it can: the reader rolls it back, and serves the last commit
    assert Snapshot.of(path).equals(before)
    assert not journal.exists() or journal.stat().st_size == 0
    assert integrity(path) == "ok"
    assert cli("verify", path).returncode == 0
