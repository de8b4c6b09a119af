"""Read-only mounting (kernel overlay, fuse-overlayfs) and mount records.

The store itself is imgscan.store; neither package imports the other."""
