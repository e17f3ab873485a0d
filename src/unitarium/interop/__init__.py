"""Interoperability with other libraries and formats (optional extras, imported lazily)."""
