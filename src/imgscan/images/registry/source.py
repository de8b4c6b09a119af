"""A registry as an image source: ``open_registry_image`` and ``list_tags``.

Opening an image reads the manifest (and, for a multi-platform image, the index and then the
chosen manifest) and the config; layers are fetched only when ``SourceImage.open_layer`` or
``RegistrySource.open_blob`` is called, so ``inspect`` never downloads a layer.
"""

from __future__ import annotations

import functools
from typing import BinaryIO, Unpack

from imgscan.images import mediatypes as mt
from imgscan.images.interface import (
    BlobSource,
    Descriptor,
    Platform,
    RegistryOptions,
    SourceImage,
    load_json,
)
from imgscan.images.platform import choose_manifest
from imgscan.images.registry.client import ClientOptions, FetchedManifest, RegistryClient
from imgscan.images.registry.credentials import find_credentials
from imgscan.images.registry.errors import RegistryProtocolError
from imgscan.images.registry.reference import RegistryReference, parse_reference

_MAX_INDEX_DEPTH = 4


class RegistrySource(BlobSource):
    """Blobs of one repository. Thread-safe: each ``open_blob`` has its own connection."""

    #: a connection pool must not be shared with a forked child: extract in threads
    fork_safe = False

    def __init__(self, client: RegistryClient, repository: str) -> None:
        self.client = client
        self.repository = repository
        self.description = f"registry {client.registry}/{repository}"

    def __repr__(self) -> str:
        return f"RegistrySource({self.client.registry!r}, {self.repository!r})"

    def open_blob(self, digest: str) -> BinaryIO:
        return self.client.open_blob(self.repository, digest)

    def close(self) -> None:
        self.client.close()


def make_client(ref: RegistryReference, *, options: ClientOptions | None = None,
                **registry_opts: Unpack[RegistryOptions]) -> RegistryClient:
    """A client for ``ref``'s registry; credentials are looked up only when a 401 asks."""
    lookup = functools.partial(find_credentials, ref.registry, ref.repository,
                               creds=registry_opts.get("creds"),
                               registry_token=registry_opts.get("registry_token"),
                               authfile=registry_opts.get("authfile"))
    return RegistryClient(ref.registry, api_host=ref.api_host,
                          tls_verify=registry_opts.get("tls_verify", True),
                          cert_dir=registry_opts.get("cert_dir"), credentials=lookup,
                          options=options)


def _as_platform(platform: Platform | str | None) -> Platform | None:
    if isinstance(platform, str):
        return Platform.parse(platform)
    return platform


def open_registry_image(
    ref: str | RegistryReference,
    platform: Platform | str | None = None,
    *,
    options: ClientOptions | None = None,
    **registry_opts: Unpack[RegistryOptions],
) -> SourceImage:
    """The image ``ref`` names, for ``platform`` (default: the host's) if it is an index.

    ``SourceImage.index_digest`` is the top-level index digest when the manifest was chosen
    from one; ``names`` is ``[full reference]``. Close with ``image.source.close()``.
    """
    parsed = ref if isinstance(ref, RegistryReference) else parse_reference(ref)
    want = _as_platform(platform)
    client = make_client(parsed, options=options, **registry_opts)
    source = RegistrySource(client, parsed.repository)
    try:
        top = client.get_manifest(parsed.repository, parsed.reference)
        fetched = top
        index_digest = None
        for _ in range(_MAX_INDEX_DEPTH):
            if fetched.media_type not in mt.INDEX_TYPES:
                break
            index_digest = index_digest or top.digest
            chosen = _choose(fetched, want, source.description)
            fetched = client.get_manifest(parsed.repository, chosen.digest)
            if chosen.size != len(fetched.data):
                raise RegistryProtocolError(
                    client.registry, f"manifest {chosen.digest} is {len(fetched.data)} bytes, "
                    f"the index says {chosen.size}")
        else:
            raise RegistryProtocolError(client.registry, f"indexes nested deeper than "
                                        f"{_MAX_INDEX_DEPTH} for {parsed}")
        return SourceImage(source, fetched.data, fetched.digest, names=[str(parsed)],
                           manifest_media_type=fetched.media_type, index_digest=index_digest)
    except BaseException:
        source.close()
        raise


def _choose(index: FetchedManifest, want: Platform | None, what: str) -> Descriptor:
    doc = load_json(index.data, f"{what}: index {index.digest}")
    entries = doc.get("manifests") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise RegistryProtocolError(what, f"index {index.digest} has no manifests list")
    descs = [Descriptor.from_json(e, f"{what}: index entry {i}") for i, e in enumerate(entries)]
    return choose_manifest(descs, want, what)


def list_tags(
    ref: str | RegistryReference,
    *,
    options: ClientOptions | None = None,
    page_size: int | None = None,
    **registry_opts: Unpack[RegistryOptions],
) -> list[str]:
    """Every tag of ``ref``'s repository (its tag or digest is ignored)."""
    parsed = ref if isinstance(ref, RegistryReference) else parse_reference(ref)
    client = make_client(parsed, options=options, **registry_opts)
    try:
        return client.list_tags(parsed.repository, page_size=page_size)
    finally:
        client.close()
