"""The ``unitarium`` command: thin click commands over the library (:mod:`.main`)."""

from .main import main

__all__ = ["main"]
