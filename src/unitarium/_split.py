"""Leakage-free splits of a dataset into named views (filled in by the splits work)."""

from __future__ import annotations

__all__ = ["SplitMixin"]


class SplitMixin:
    """Methods of :class:`~unitarium.Dataset` about splits and sampling."""
