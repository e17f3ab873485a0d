"""What to compute: the spec (everything that fixes a dataset's content) and its self-contained tasks.

Internal: the public API is what :mod:`unitarium` exports."""
