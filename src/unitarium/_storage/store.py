"""Compatibility names for code written against the single ``store`` module (split into
:mod:`.sqlite`, :mod:`.schema`, :mod:`.manifest` and :mod:`.layout`); removed once nothing imports it."""

from __future__ import annotations

from .schema import *  # noqa: F403
from .sqlite import *  # noqa: F403
