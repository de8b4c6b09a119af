"""A ``docker save`` stream (``GET /images/{name}/get``) read once, in the order it arrives.

Docker writes the save tar in lexical name order, so neither of its shapes gives the image's
layer order before the layers:

* Docker 20.10 to 24 (the legacy docker-archive): ``<v1id>/VERSION``, ``<v1id>/json``,
  ``<v1id>/layer.tar`` (uncompressed; a repeated layer is a symlink to the first copy),
  ``<confighex>.json``, ``manifest.json``, ``repositories``;
* Docker 25+: an OCI layout, ``blobs/sha256/<hex>`` (config, manifests, layers), then
  ``index.json``, ``manifest.json``, ``oci-layout``.

``manifest.json``, which maps the config and the layer order, comes after the layers. What the
Engine answered before the stream (inspect: the image id, which is the config's digest, and
the diff_ids) names most layers *before* their bytes pass, so a consumer can decide whether
to analyze one: an OCI blob is named by its digest (an uncompressed layer's digest is its
diff_id); a legacy ``<v1id>/json`` names its layer through the v1 id, which Docker derives
from the layer's chain id (moby ``image/v1.CreateID``): the chain id for which that hash
gives the directory's name is the layer's position. That is a proof, not a guess, and when it
fails the layer is simply "not known yet". Either way every layer's bytes are hashed as they
pass and must equal the diff_id that the verified config gives its position.

Nothing is written anywhere: small JSON members (manifest.json, the image's own config) are held
in memory under size caps, layers are handed to the consumer as streams and never held.
"""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from imgscan.errors import DigestMismatch, ImageError
from imgscan.images.archive import MAX_MEMBERS, clean_name, resolve_link
from imgscan.images.compression import HEAD_SIZE, detect_compression
from imgscan.images.digest import sha256_digest
from imgscan.images.docker_manifest import manifest_item, str_list, with_tag
from imgscan.images.interface import MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES, parse_config

_HEX = r"[0-9a-f]{64}"
_V1_JSON = re.compile(rf"^({_HEX})/json$")
_V1_LAYER = re.compile(rf"^({_HEX})/layer\.tar$")
_BLOB = re.compile(rf"^blobs/sha256/({_HEX})$")
#: a legacy ``<v1id>/json`` is a few hundred bytes; the top one carries the image config
MAX_V1_JSON = 1 << 20
#: after the tar's end marker: Docker writes none, a tar writer pads to at most 10 KiB
MAX_TRAILER = 1 << 20
#: the v1-id proof hashes (layers x 2) candidates per layer: beyond this, layers are "unknown"
MAX_PROVEN_LAYERS = 256


@dataclass
class Arrival:
    """A layer of the stream at the moment it arrives. ``stream`` is valid until the next
    arrival is asked for. ``diff_id`` is known before reading (a blob name, a v1-id proof)
    or ""; ``blob_digest`` is the digest the member's name states ("" for legacy names)."""

    name: str
    size: int
    stream: BinaryIO
    diff_id: str
    blob_digest: str


@dataclass
class SavedImage:
    """What the stream said once it ended, verified: the config (its digest is the image id),
    the member holding each layer in image order, and the stream's RepoTags."""

    config: dict[str, Any]
    raw_config: bytes
    layer_names: list[str]
    names: list[str]


class SaveStream:
    """Walk ``reader`` (the save tar) once: ``arrivals()`` yields the layers as they come,
    ``finish()`` then checks what the stream claimed against what the Engine said."""

    def __init__(self, reader: BinaryIO, image_id: str, diff_ids: Sequence[str],
                 what: str) -> None:
        self._reader = reader
        self.image_id = image_id
        self.diff_ids = list(diff_ids)
        self.what = what
        self._small: dict[str, bytes] = {}
        self._links: dict[str, tuple[bool, str]] = {}
        self._layers: set[str] = set()
        self._seen: set[str] = set()
        self._v1: dict[str, int] = {}
        self._config_json = image_id.partition(":")[2] + ".json"
        self._chains = _chain_ids(self.diff_ids) if len(self.diff_ids) <= MAX_PROVEN_LAYERS \
            else []

    def arrivals(self) -> Iterator[Arrival]:
        what = self.what
        try:
            tar = tarfile.open(fileobj=self._reader, mode="r|")  # noqa: SIM115
        except tarfile.ReadError as e:
            if "empty" in str(e):
                raise ImageError(f"{what}: empty image stream") from None
            raise ImageError(f"{what}: not a tar stream ({e})") from None
        try:
            with tar:
                for ti in tar:
                    tar.members = []  # type: ignore[attr-defined]  # memory stays flat
                    arrival = self._member(tar, ti)
                    if arrival is not None:
                        yield arrival
        except (tarfile.TarError, EOFError) as e:
            raise ImageError(f"{what}: the save stream is truncated or corrupt ({e})") from None
        self._drain_trailer()

    def _member(self, tar: tarfile.TarFile, ti: tarfile.TarInfo) -> Arrival | None:
        name = clean_name(ti.name, self.what)
        if not name:
            return None
        if name in self._seen:
            raise ImageError(f"{self.what}: member {name!r} appears twice")
        if len(self._seen) >= MAX_MEMBERS:
            raise ImageError(f"{self.what}: more than {MAX_MEMBERS} members")
        self._seen.add(name)
        if ti.issym() or ti.islnk():
            self._links[name] = (ti.issym(), ti.linkname)
            return None
        if not ti.isreg():
            return None
        f: BinaryIO = tar.extractfile(ti)  # type: ignore[assignment]
        if name == "manifest.json":
            self._small[name] = self._read(f, ti, MAX_MANIFEST_BYTES)
        elif name == self._config_json:  # only the image's own config is held
            self._small[name] = self._read(f, ti, MAX_CONFIG_BYTES)
        elif (m := _V1_JSON.match(name)) and ti.size <= MAX_V1_JSON:
            pos = _v1_position(m[1], f.read(), self._chains)
            if pos is not None:
                self._v1[m[1]] = pos
        elif m := _V1_LAYER.match(name):
            pos = self._v1.get(m[1])
            self._layers.add(name)
            return Arrival(name, ti.size, f, self.diff_ids[pos] if pos is not None else "", "")
        elif m := _BLOB.match(name):
            return self._blob(name, "sha256:" + m[1], f, ti)
        return None

    def _blob(self, name: str, digest: str, f: BinaryIO, ti: tarfile.TarInfo
              ) -> Arrival | None:
        if digest == self.image_id:  # only the image's own config is held
            self._small[name] = self._read(f, ti, MAX_CONFIG_BYTES)
            return None
        if digest in self.diff_ids:  # an uncompressed layer: its name is its diff_id
            self._layers.add(name)
            return Arrival(name, ti.size, f, digest, digest)
        if detect_compression(f.peek(HEAD_SIZE)[:HEAD_SIZE]):  # type: ignore[attr-defined]
            self._layers.add(name)  # a compressed layer: its diff_id is known once read
            return Arrival(name, ti.size, f, "", digest)
        return None  # an OCI index or manifest, or a blob no layer of this image can be

    def _read(self, f: BinaryIO, ti: tarfile.TarInfo, cap: int) -> bytes:
        if ti.size > cap:
            raise ImageError(f"{self.what}: {ti.name} is larger than {cap} bytes")
        return f.read()

    def _drain_trailer(self) -> None:
        """Read to the end of the response: a stream cut after the tar's end marker, or a
        tar followed by garbage, is not a complete answer."""
        n = 0
        while chunk := self._reader.read(1 << 16):
            n += len(chunk)
            if n > MAX_TRAILER:
                raise ImageError(f"{self.what}: data after the end of the save tar")

    def finish(self) -> SavedImage:
        """The verified image: manifest.json present and naming members that arrived, the
        config hashing to the image id the Engine gave, as many layers as diff_ids."""
        what = self.what
        raw = self._small.get("manifest.json")
        if raw is None:
            raise ImageError(f"{what}: the save stream has no manifest.json")
        item, config_name = manifest_item(raw, None, None, what)
        config_name = resolve_link(clean_name(config_name, what), self._links, what)
        raw_config = self._small.get(config_name)
        if raw_config is None and config_name in self._seen:
            raise DigestMismatch(f"{what}: the stream's config {config_name} is not the "
                                 f"image {self.image_id} the Engine gave")
        if raw_config is None:
            raise ImageError(f"{what}: manifest.json names config {config_name}, which is "
                             "not in the stream")
        digest = sha256_digest(raw_config)
        if digest != self.image_id:
            raise DigestMismatch(f"{what}: the config hashes to {digest}, not to the image "
                                 f"id {self.image_id} the Engine gave")
        config = parse_config(raw_config, f"{what}: config")
        if list(config["rootfs"]["diff_ids"]) != self.diff_ids:
            raise DigestMismatch(f"{what}: the config's diff_ids are not the layers the "
                                 "Engine listed")
        names = []
        for n in str_list(item.get("Layers"), f"{what}: manifest.json Layers"):
            name = resolve_link(clean_name(n, what), self._links, what)
            if name not in self._layers:
                raise ImageError(f"{what}: manifest.json names layer {n}, which is not in "
                                 "the stream")
            names.append(name)
        if len(names) != len(self.diff_ids):
            raise ImageError(f"{what}: manifest.json lists {len(names)} layers but the config "
                             f"has {len(self.diff_ids)} diff_ids")
        tags = [with_tag(t) for t in str_list(item.get("RepoTags"),
                                              f"{what}: manifest.json RepoTags") if t]
        return SavedImage(config, raw_config, names, tags)


def _chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """Each layer's chain id (OCI image spec): the id of the stack up to and including it."""
    out: list[str] = []
    for d in diff_ids:
        out.append(d if not out else
                   "sha256:" + hashlib.sha256(f"{out[-1]} {d}".encode()).hexdigest())
    return out


def _raw_fields(text: str) -> dict[str, str] | None:
    """A JSON object's top-level members as their raw text (Go's ``json.RawMessage``)."""
    dec = json.JSONDecoder()
    out: dict[str, str] = {}
    i = text.find("{") + 1
    if i <= 0:
        return None
    try:
        while True:
            while text[i] in " \t\r\n,":
                i += 1
            if text[i] == "}":
                return out
            key, i = dec.raw_decode(text, i)
            i = text.index(":", i) + 1
            while text[i] in " \t\r\n":
                i += 1
            _, end = dec.raw_decode(text, i)
            out[str(key)] = text[i:end]
            i = end
    except (ValueError, IndexError):
        return None


def _v1_position(v1id: str, raw: bytes, chains: Sequence[str]) -> int | None:
    """The position of the layer whose legacy ``<v1id>/json`` this is, proven: moby's
    ``v1.CreateID`` hashes the v1 image JSON without ``id`` (and, below the top layer,
    without the ``os`` it adds afterwards), plus ``layer_id`` = the chain id and ``parent``
    = the parent's v1 digest, keys sorted. None when no chain id reproduces ``v1id``."""
    try:
        fields = _raw_fields(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return None
    if fields is None:
        return None
    fields.pop("id", None)
    if "parent" in fields:
        try:
            fields["parent"] = json.dumps("sha256:" + str(json.loads(fields["parent"])))
        except ValueError:
            return None
    for drop_os in (True, False):
        base = {k: v for k, v in fields.items() if not (drop_os and k == "os")}
        for pos, chain in enumerate(chains):
            base["layer_id"] = json.dumps(chain)
            text = "{" + ",".join(f"{json.dumps(k)}:{base[k]}" for k in sorted(base)) + "}"
            if hashlib.sha256(text.encode()).hexdigest() == v1id:
                return pos
    return None
