"""Pictures of a dataset (``unitarium plot``): circuit lengths, records per task, gate frequencies.

:func:`profile` gathers the numbers (the length histogram from the committed summary, records per
task from the tasks table, move frequencies from the circuits: all of them up to ``sample`` records,
else ``sample`` records in evenly spaced ranges); :func:`text_chart` draws them as text bars (no
extra library); :func:`figure` as a PNG with matplotlib (``pip install 'unitarium[plot]'``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._errors import MissingOptionalLibraryError

__all__ = ["Profile", "figure", "profile", "text_chart"]

_SAMPLE = 1_000_000
"""Circuits whose moves are counted at most (evenly spaced ranges of a larger dataset)."""
_RANGES = 64


@dataclass(frozen=True)
class Profile:
    """The numbers a plot shows: ``lengths`` {length: records}; ``per_task`` records of each task
    that holds any (task order); ``moves`` names and ``move_counts`` their uses in ``counted``
    circuits (all, or an even sample); ``title``."""

    title: str
    records: int
    lengths: dict[int, int]
    per_task: np.ndarray
    moves: list[str]
    move_counts: np.ndarray
    counted: int


def profile(ds: Any, *, sample: int = _SAMPLE) -> Profile:
    """The :class:`Profile` of a :class:`~unitarium.Dataset` (its records now; of a snapshot, its
    prefix: then the lengths are counted from the circuits read, like the moves)."""
    info = ds.info()
    n = len(ds)
    rows = ds._query("SELECT count FROM tasks WHERE count > 0 AND first_id < ? ORDER BY task_id", (n,))
    per_task = np.array([int(r[0]) for r in rows], dtype=np.int64)
    moves = list(info["moves"])
    counts = np.zeros(len(moves), dtype=np.int64)
    lengths = np.zeros(1, dtype=np.int64)
    counted = 0
    for a, b in _ranges(n, sample):
        codes, offsets = ds.codes(a, b)
        counts += np.bincount(codes, minlength=len(moves))[: len(moves)]
        seen = np.bincount(np.diff(offsets))
        lengths = np.pad(lengths, (0, max(0, len(seen) - len(lengths)))) + np.pad(
            seen, (0, max(0, len(lengths) - len(seen)))
        )
        counted += b - a
    hist = info["length_histogram"]
    if int(info["records"]) != n:  # a prefix: the summary counts more than these records
        hist = {k: int(v) for k, v in enumerate(lengths) if v}
    if per_task.sum() > n:  # the last task is cut by the prefix
        per_task[-1] -= int(per_task.sum()) - n
    name = os.fsencode(Path(info["path"]).name).decode("utf-8", "backslashreplace")  # any bytes: printable text
    title = f"{name}: {info['description']}"
    return Profile(title, n, hist, per_task, moves, counts, counted)


def _ranges(n: int, sample: int) -> list[tuple[int, int]]:
    """All of ``0 .. n-1`` in pieces, or ``sample`` positions as evenly spaced ranges."""
    if n <= sample:
        step = max(1, _SAMPLE // 8)
        return [(a, min(n, a + step)) for a in range(0, n, step)]
    size = max(1, sample // _RANGES)
    starts = np.linspace(0, n - size, _RANGES).astype(np.int64)
    return [(int(a), int(a) + size) for a in starts]


def _bar(value: float, top: float, width: int) -> str:
    cells = 0 if top <= 0 else round(8 * width * value / top)
    return "█" * (cells // 8) + ("", "▏", "▎", "▍", "▌", "▋", "▊", "▉")[cells % 8]


def text_chart(p: Profile, *, width: int = 40, top_moves: int = 12) -> str:
    """The profile as text: a bar per circuit length, per most used move, and task sizes."""
    lines = [p.title, f"{p.records:,} records", "", "circuit length   records"]
    top = max(p.lengths.values(), default=0)
    for length, count in p.lengths.items():
        lines.append(f"{length:>14}   {count:>12,}  {_bar(count, top, width)}")
    total = int(p.move_counts.sum())
    sample = "" if p.counted >= p.records else f", in {p.counted:,} sampled circuits"
    lines += ["", f"moves (share of {total:,} uses{sample})"]
    order = np.argsort(-p.move_counts, kind="stable")[:top_moves]
    most = int(p.move_counts[order[0]]) if len(order) else 0
    for k in order:
        share = p.move_counts[k] / total if total else 0.0
        lines.append(f"{p.moves[k]:>14}   {share:>11.1%}  {_bar(int(p.move_counts[k]), most, width)}")
    if len(p.moves) > top_moves:
        lines.append(f"{'':>14}   ... and {len(p.moves) - top_moves} more")
    if len(p.per_task):
        t = p.per_task
        lines += [
            "",
            f"records per task: {len(t):,} tasks, min {t.min():,}, median {int(np.median(t)):,}, max {t.max():,}",
        ]
    return "\n".join(lines)


def figure(p: Profile, out: str | os.PathLike[str]) -> Path:
    """Write the profile as a PNG (three panels: lengths, records per task, move frequencies) to ``out``."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, never a window
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise MissingOptionalLibraryError("matplotlib", "unitarium plot --out", "plot") from exc
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), constrained_layout=True)
    try:
        lengths = sorted(p.lengths)
        axes[0].bar(lengths, [p.lengths[k] for k in lengths], color="#4C72B0")
        axes[0].set(title="circuit lengths", xlabel="length (moves)", ylabel="records")
        axes[1].plot(
            np.arange(len(p.per_task)), p.per_task, ".", markersize=8 if len(p.per_task) < 200 else 2, color="#55A868"
        )
        axes[1].set(title=f"records per task ({len(p.per_task):,} tasks)", xlabel="task", ylabel="records")
        order = np.argsort(-p.move_counts, kind="stable")[:30]
        total = max(1, int(p.move_counts.sum()))
        axes[2].barh([p.moves[k] for k in order][::-1], (p.move_counts[order] / total)[::-1], color="#C44E52")
        sample = "" if p.counted >= p.records else f", {p.counted:,} circuits sampled"
        axes[2].set(title=f"move frequencies{sample}", xlabel="share of moves")
        fig.suptitle(p.title, fontsize=10)
        path = Path(out)
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
    return path
