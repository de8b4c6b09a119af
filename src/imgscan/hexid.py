"""``hex_of``: the encoded part of a digest or image id, in a module that imports nothing.

Why its own module: ``imgscan mount`` needs it, and ``imgscan.images.digest`` (where the digest
parsers live) imports ``re`` and ``typing``, which a mount does not otherwise pay for.
"""


def hex_of(digest: str) -> str:
    """The encoded part of a digest (``sha256:abc`` -> ``abc``)."""
    return digest.split(":", 1)[1] if ":" in digest else digest
