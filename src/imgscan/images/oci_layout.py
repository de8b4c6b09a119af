"""OCI image layouts (FORMATS.md §1.1): a directory, and the image choice shared with archives.

``image_from_layout`` holds the choice of one image from ``index.json`` (by ref name, by
``@N``, or the only one; nested indexes by platform) for any ``LayoutSource``: the
``OCILayoutSource`` here reads a directory, ``archive.OCIArchiveSource`` a tar.

Blob files are opened without trusting the layout: the digest is validated before it becomes a
path, every component is opened relative to its parent with ``O_NOFOLLOW`` (a symlinked
``blobs`` or blob cannot lead outside the layout), with ``O_NONBLOCK`` (a FIFO cannot hang the
open) and the result must be a regular file.
"""

from __future__ import annotations

import errno
import os
import stat
from abc import abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, BinaryIO

from imgscan.errors import BadReferenceError, ImageError
from imgscan.images import mediatypes as mt
from imgscan.images.digest import parse_digest
from imgscan.images.interface import (
    MAX_MANIFEST_BYTES,
    BlobSource,
    Descriptor,
    Platform,
    SourceImage,
    load_json,
)
from imgscan.images.platform import choose_manifest

REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
#: index -> index -> manifest is the deepest seen in practice; more is a loop or an attack
MAX_INDEX_DEPTH = 4
#: index.json of a busy layout can be large, but not unboundedly
MAX_INDEX_JSON_BYTES = 16 << 20
_KNOWN = mt.MANIFEST_TYPES | mt.INDEX_TYPES


class LayoutSource(BlobSource):
    """A blob source that also has the layout's top-level files (``oci-layout``, index.json)."""

    @abstractmethod
    def read_file(self, name: str, limit: int) -> bytes:
        """A small top-level file; ImageError when missing, unsafe or over ``limit``."""


def _open_nofollow(parts: Sequence[str], root: str, what: str) -> int:
    """Open ``root/parts…`` one component at a time, never following a symlink inside root."""
    flags_dir = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise ImageError(f"{what}: cannot open {root}: {e.strerror}") from None
    try:
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            flags = (os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK) if last \
                else flags_dir
            try:
                nfd = os.open(part, flags, dir_fd=fd)
            except OSError as e:
                rel = "/".join(parts[: i + 1])
                where = "" if last else f" ({rel})"
                if e.errno == errno.ENOENT:
                    raise ImageError(f"{what} is missing{where}") from None
                if e.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise ImageError(
                        f"{what}: {rel} is a symlink or not a directory; refusing to follow it"
                    ) from None
                raise ImageError(f"{what}: cannot open {rel}: {e.strerror}") from None
            os.close(fd)
            fd = nfd
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ImageError(f"{what} is not a regular file")
        os.set_blocking(fd, True)
        return fd
    except BaseException:
        os.close(fd)
        raise


class OCILayoutSource(LayoutSource):
    """Blobs of an OCI layout directory, opened safely (module doc)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.description = f"oci layout {path}"
        if not os.path.isdir(path):
            what = "does not exist" if not os.path.lexists(path) else "is not a directory"
            raise ImageError(f"{self.description}: {what}")

    def _open(self, parts: Sequence[str], what: str) -> BinaryIO:
        fd = _open_nofollow(parts, self.path, what)
        return os.fdopen(fd, "rb", buffering=1 << 20)

    def open_blob(self, digest: str) -> BinaryIO:
        alg, enc = parse_digest(digest)
        return self._open(("blobs", alg, enc), f"{self.description}: blob {digest}")

    def read_file(self, name: str, limit: int) -> bytes:
        with self._open((name,), f"{self.description}: {name}") as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise ImageError(f"{self.description}: {name} is larger than {limit} bytes")
        return data


@contextmanager
def naming(description: str) -> Iterator[None]:
    """Make every ImageError raised inside name the source (some shared helpers, such as
    ``parse_digest``, do not know it)."""
    try:
        yield
    except ImageError as e:
        if description in str(e):
            raise
        raise type(e)(f"{description}: {e}") from None
    except RecursionError:
        # json.loads of "[[[[…" a few thousand deep
        raise ImageError(f"{description}: JSON nested too deeply") from None


def _descriptors(entries: Any, what: str) -> list[tuple[int, Descriptor]]:
    """The image and index entries of a ``manifests`` list with their positions.

    Entries of any other media type are skipped, as the image-layout spec requires; an entry
    without a media type is kept (its blob says what it is).
    """
    if not isinstance(entries, list):
        raise ImageError(f"{what}: manifests is not a list")
    out = []
    for i, raw in enumerate(entries):
        if not isinstance(raw, dict):
            raise ImageError(f"{what}: manifests[{i}] is not an object")
        media = raw.get("mediaType")
        if media not in (None, "") and not (isinstance(media, str) and media in _KNOWN):
            continue
        out.append((i, Descriptor.from_json(raw, f"{what}: manifests[{i}]")))
    return out


def _label(i: int, d: Descriptor) -> str:
    text = f"@{i}"
    name = d.annotations.get(REF_NAME)
    if name:
        text += f" {name}"
    if d.platform is not None:
        text += f" ({d.platform})"
    return text


def _available(found: list[tuple[int, Descriptor]]) -> str:
    labels = [_label(i, d) for i, d in found[:20]]
    if len(found) > 20:
        labels.append(f"… {len(found) - 20} more")
    return ", ".join(labels) or "none"


def _select(
    index_json: Any, ref: str | None, index: int | None, what: str
) -> Descriptor:
    """The top-level entry of index.json that ``ref`` / ``@N`` / nothing names."""
    if not isinstance(index_json, dict):
        raise ImageError(f"{what}: index.json is not a JSON object")
    if index_json.get("schemaVersion") != 2:
        raise ImageError(f"{what}: index.json schemaVersion is not 2")
    entries = index_json.get("manifests")
    found = _descriptors(entries, f"{what}: index.json")
    if index is not None:
        assert isinstance(entries, list)
        if not 0 <= index < len(entries):
            raise BadReferenceError(
                f"{what}: @{index} is out of range (index.json has {len(entries)} entries)"
            )
        for i, d in found:
            if i == index:
                return d
        raise BadReferenceError(f"{what}: entry @{index} is not an image or an index")
    if ref is not None:
        named = [(i, d) for i, d in found if d.annotations.get(REF_NAME) == ref]
        if not named:
            raise BadReferenceError(
                f"{what}: no image named {ref!r}; available: {_available(found)}"
            )
        if len({d.digest for _, d in named}) > 1:
            raise BadReferenceError(
                f"{what}: more than one image named {ref!r}, choose one with @N; "
                f"available: {_available(named)}"
            )
        return named[0][1]
    if not found:
        raise BadReferenceError(f"{what}: no image in index.json")
    if len({d.digest for _, d in found}) > 1:
        raise BadReferenceError(
            f"more than one image in {what}, choose one with :REF or @N; "
            f"available: {_available(found)}"
        )
    return found[0][1]


def _media_type_of(desc: Descriptor, doc: Any) -> str:
    """What a blob is: its descriptor's media type, else its own, else guessed from its shape."""
    if desc.media_type:
        return desc.media_type
    if isinstance(doc, dict):
        own = doc.get("mediaType")
        if isinstance(own, str) and own:
            return own
        if "manifests" in doc:
            return mt.OCI_INDEX
    return mt.OCI_MANIFEST


def resolve_descriptor(
    source: BlobSource,
    desc: Descriptor,
    platform: Platform | None,
    names: Sequence[str] = (),
    depth: int = 0,
    index_digest: str | None = None,
) -> SourceImage:
    """Follow ``desc`` through nested indexes (by platform) to one image manifest."""
    kind = "index" if desc.media_type in mt.INDEX_TYPES else "manifest"
    what = f"{source.description}: {kind} {desc.digest}"
    data = source.read_blob(desc.digest, desc.size, MAX_MANIFEST_BYTES, what)
    doc = load_json(data, what) if kind == "index" or not desc.media_type else None
    media = _media_type_of(desc, doc)
    if media not in mt.INDEX_TYPES:
        return SourceImage(
            source,
            data,
            desc.digest,
            names=names,
            manifest_media_type=desc.media_type or None,
            index_digest=index_digest,
        )
    if depth >= MAX_INDEX_DEPTH:
        raise ImageError(f"{what}: indexes nested deeper than {MAX_INDEX_DEPTH} levels")
    if not isinstance(doc, dict):
        raise ImageError(f"{what} is not a JSON object")
    own = doc.get("mediaType")
    if own and desc.media_type and own != desc.media_type:
        raise ImageError(f"{what}: mediaType {own!r} disagrees with {desc.media_type!r}")
    found = [d for _, d in _descriptors(doc.get("manifests"), what)]
    chosen = choose_manifest(found, platform, what)
    return resolve_descriptor(
        source, chosen, platform, names, depth + 1, index_digest or desc.digest
    )


def _names(desc: Descriptor) -> list[str]:
    out: list[str] = []
    for key in (REF_NAME, CONTAINERD_NAME):
        v = desc.annotations.get(key)
        if v and v not in out:
            out.append(v)
    return out


def image_from_layout(
    source: LayoutSource,
    ref: str | None = None,
    index: int | None = None,
    platform: Platform | None = None,
) -> SourceImage:
    """Choose and open one image of a layout (FORMATS.md §1.1; containers-transports(5))."""
    with naming(source.description):
        return _image_from_layout(source, ref, index, platform)


def _image_from_layout(
    source: LayoutSource, ref: str | None, index: int | None, platform: Platform | None
) -> SourceImage:
    what = source.description
    header = load_json(source.read_file("oci-layout", 1 << 16), f"{what}: oci-layout")
    if not isinstance(header, dict) or not isinstance(header.get("imageLayoutVersion"), str):
        raise ImageError(f"{what}: oci-layout has no imageLayoutVersion")
    index_json = load_json(
        source.read_file("index.json", MAX_INDEX_JSON_BYTES), f"{what}: index.json"
    )
    desc = _select(index_json, ref, index, what)
    return resolve_descriptor(source, desc, platform, names=_names(desc))


def open_oci_layout(
    path: str,
    ref: str | None = None,
    index: int | None = None,
    platform: Platform | None = None,
) -> SourceImage:
    """Open one image of the OCI layout directory ``path`` (``oci:PATH[:REF|:@N]``)."""
    return image_from_layout(OCILayoutSource(path), ref, index, platform)
