"""Bytes on disk: SQLite settings, schema and errors, the file writer, shards and the manifest, checked block reads.

Internal: the public API is what :mod:`unitarium` exports."""
