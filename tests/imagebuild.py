"""The tests' image builders live in the package (``imgscan.imagebuild``) so that the sample
image script and plugin authors can use them too."""

from imgscan.imagebuild import *  # noqa: F403
from imgscan.imagebuild import (  # noqa: F401
    OCI_CONFIG,
    OCI_INDEX,
    OCI_MANIFEST,
    OPQ,
    WH,
    BlobDir,
    D,
    Entry,
    F,
    H,
    ImageSpec,
    L,
    Layer,
    compress,
    layer_tar,
    sha256,
    tar_directory,
    write_docker25_archive,
    write_docker_archive,
    write_manifest,
    write_oci_layout,
)
