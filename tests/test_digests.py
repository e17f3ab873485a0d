"""Digest pins: a fixed set of specs (every mode) hashes to the same content in a file and in a directory, with 1
or 2 workers, as on main ``6c1f742``. The refactor of the engines and the storage must keep every byte of content;
the Ray engine's pins are in ``test_ray``."""

from __future__ import annotations

import pytest

import unitarium

from conftest import PINNED_DIGESTS, PINNED_SPECS, dataset_digest

LAYOUTS = [("file", 1), ("directory", 2)]
"""Worker counts and resumes are compared record for record in test_engine and test_shards; here: the pins."""


@pytest.mark.parametrize("name", list(PINNED_SPECS))
@pytest.mark.parametrize(("layout", "workers"), LAYOUTS)
def test_content_is_pinned(made, name: str, layout: str, workers: int) -> None:
    """``made`` runs ``unitarium.generate`` (once a session: test_shards reads the same datasets)."""
    path = made(unitarium.make_spec(**PINNED_SPECS[name]), layout=layout, workers=workers)
    assert dataset_digest(path) == PINNED_DIGESTS[name]
