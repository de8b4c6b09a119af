"""The layer store (locks, metadata, safe extraction, gc, repair) and read-only mounting."""
