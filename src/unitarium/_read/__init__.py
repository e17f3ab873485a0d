"""Readers: the dataset, views, splits and samples, bulk reads by id.

Internal: the public API is what :mod:`unitarium` exports."""
