"""Running out of space, for real: the CLI runs under a file-size limit (``RLIMIT_FSIZE``, set in the child;
Python ignores SIGXFSZ, so writes past the limit fail with EFBIG exactly as on a full disk, and no mount or
privilege is needed). The user sees one clear line, the dataset stays intact, and once the limit is lifted
the same command resumes and completes it."""

from __future__ import annotations

import resource
import subprocess
from pathlib import Path

import pytest

from conftest import Snapshot, cli, file_digests, integrity, one_error_line, uninterrupted

COUNT = 30_000
ARGS = ["--gates", "clifford+t", "--qubits", "3", "--count", str(COUNT), "--length", "1:30", "--seed", "14"]
MiB = 1 << 20

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Snapshot:
    return Snapshot.of(uninterrupted(tmp_path_factory, "full.db", ARGS))


def generate_with_file_size_limit(path: Path, limit: int, workers: int) -> subprocess.CompletedProcess:
    def limit_file_size() -> None:  # runs in the child, before exec
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return cli("generate", path, *ARGS, "--workers", str(workers), "--quiet", check=False, preexec_fn=limit_file_size)


def check_no_space_message(proc: subprocess.CompletedProcess, limit: int) -> str:
    assert proc.returncode == 2
    line = one_error_line(proc.stderr)
    assert "failed:" in line and ("no space" in line or "disk is full" in line), line
    assert f"file size limit {limit:,} bytes" in line and "MiB free" in line, line
    return line


@pytest.mark.parametrize("workers", [1, 2])
def test_no_space_mid_run_keeps_what_is_committed_and_resumes(
    tmp_path: Path, reference: Snapshot, workers: int
) -> None:
    path = tmp_path / "full.db"
    proc = generate_with_file_size_limit(path, 3 * MiB, workers)
    line = check_no_space_message(proc, 3 * MiB)
    assert "everything committed is kept: make room and re-run the same command to resume" in line
    assert integrity(path) == "ok"
    partial = Snapshot.of(path)
    assert 0 < len(partial) < COUNT and partial.is_prefix_of(reference)

    cli("generate", path, *ARGS, "--workers", str(workers), "--quiet")  # space is back
    assert integrity(path) == "ok"
    assert Snapshot.of(path).equals(reference)


def test_no_space_while_resuming_a_larger_file(tmp_path: Path, reference: Snapshot) -> None:
    """The limit is below the size of the file already there: the resume fails, the file stays as it was."""
    path = tmp_path / "full.db"
    generate_with_file_size_limit(path, 6 * MiB, 2)
    before = Snapshot.of(path)
    assert path.stat().st_size > 2 * MiB
    check_no_space_message(generate_with_file_size_limit(path, 2 * MiB, 2), 2 * MiB)
    assert integrity(path) == "ok"
    after = Snapshot.of(path)
    assert before.is_prefix_of(after) and after.is_prefix_of(reference)
    cli("generate", path, *ARGS, "--quiet")
    assert Snapshot.of(path).equals(reference)


def test_no_space_while_creating_leaves_nothing_behind(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    proc = generate_with_file_size_limit(path, 100_000, 2)
    line = check_no_space_message(proc, 100_000)
    assert "creating" in line and "nothing was created" in line
    assert list(tmp_path.iterdir()) == [], "a half-made dataset or temporary file was left behind"


def test_a_refused_resume_changes_nothing(tmp_path: Path) -> None:
    """Out of space before anything is written (the limit is below even the WAL's first frame)."""
    path = tmp_path / "full.db"
    generate_with_file_size_limit(path, 3 * MiB, 1)
    digests = file_digests(path)
    proc = generate_with_file_size_limit(path, 1, 1)
    check_no_space_message(proc, 1)
    assert integrity(path) == "ok"
    assert file_digests(path) == digests
