"""Synthesis on top of the data: meet-in-the-middle and nearest unitaries."""

from __future__ import annotations

__all__ = ["SearchMixin"]


class SearchMixin:
    """Methods of :class:`~unitarium.Dataset` that search the data (synthesis, nearest)."""
