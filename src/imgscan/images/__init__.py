"""Image sources: references, OCI layouts, archives, registries, digests and media types."""
