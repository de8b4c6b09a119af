"""podman/buildah/CRI-O images read where they are, in containers/storage (overlay driver).

``conf`` resolves the store, ``locks`` takes c/storage's own fcntl locks, ``store`` reads its
records, ``layerwalk`` turns a layer's ``diff/`` into ``FileInfo`` entries, ``mount`` mounts
as podman does, ``scan`` scans in place. Submodules are imported on use: ``imgscan mount``
must not load the analyzers.
"""
