"""A containers/storage image as a ``SourceImage``: ``inspect`` and ``pull`` read it so.

The manifest is the one c/storage stored for the image (its digest is what podman shows),
the config its config big-data item, and each layer blob the layer's original tar rebuilt
from ``diff/`` and the tar-split (uncompressed, so the importer's diff_id check verifies every
byte). layers.lock is held shared from opening until ``close()``, as ``podman save`` holds it:
a concurrent ``podman rmi`` waits for the copy.
"""

from __future__ import annotations

import contextlib
import io
import json
from typing import Any, BinaryIO

from imgscan.cstorage.store import ContainersStorage, CSImage, CSLayer
from imgscan.cstorage.tarsplit import open_layer_tar
from imgscan.errors import ImageError
from imgscan.images import mediatypes as mt
from imgscan.images.digest import sha256_digest
from imgscan.images.interface import BlobSource, LayerInfo, SourceImage, layer_history


class CSBlobSource(BlobSource):
    def __init__(self, cs: ContainersStorage, image: CSImage, chain: list[CSLayer],
                 config: bytes, hold: contextlib.ExitStack) -> None:
        self.description = f"containers-storage {cs.graph_root} image {image.short_id}"
        self.cs = cs
        self.chain = chain
        self._config = config
        self._config_digest = sha256_digest(config)
        self._hold = hold

    def open_blob(self, digest: str) -> BinaryIO:
        if digest == self._config_digest:
            return io.BytesIO(self._config)
        raise ImageError(f"{self.description}: no blob {digest}")

    def open_layer(self, layer: LayerInfo) -> BinaryIO:
        lay = self.chain[layer.index]
        return open_layer_tar(self.cs.graph_root, lay.id, self.cs.diff_path(lay),
                              f"{self.description}: layer {lay.id[:12]}")

    def close(self) -> None:
        self._hold.close()


def _manifest(cs: ContainersStorage, image: CSImage, chain: list[CSLayer],
              config: bytes) -> tuple[bytes, str]:
    """The stored manifest when it describes this config and as many layers; else one made
    up the docker-archive way (uncompressed layers named by their diff_ids)."""
    with contextlib.suppress(ImageError, ValueError):
        raw = cs.raw_manifest(image)
        doc = json.loads(raw)
        if isinstance(doc, dict) and doc.get("schemaVersion") == 2 and \
                (doc.get("config") or {}).get("digest") == sha256_digest(config) and \
                len(doc.get("layers") or []) == len(chain):
            return raw, sha256_digest(raw)
    made = json.dumps({
        "schemaVersion": 2, "mediaType": mt.DOCKER_MANIFEST,
        "config": {"mediaType": mt.DOCKER_CONFIG, "size": len(config),
                   "digest": sha256_digest(config)},
        "layers": [{"mediaType": mt.DOCKER_LAYER, "size": lay.size, "digest": lay.diff_id}
                   for lay in chain]}, separators=(",", ":")).encode()
    return made, sha256_digest(made)


def open_cs_image(cs: ContainersStorage, ref: str) -> SourceImage:
    """Open image ``ref`` of ``cs``; the caller closes ``image.source``."""
    hold = contextlib.ExitStack()
    try:
        hold.enter_context(cs.layers_held())
        with cs.reading():
            image = cs.lookup(ref)
            chain = cs.chain(image)
            config = cs.raw_config(image)
        raw, digest = _manifest(cs, image, chain, config)
        source = CSBlobSource(cs, image, chain, config, hold)
        cfg: dict[str, Any] = json.loads(config)
        history = layer_history(cfg)
        layers = [LayerInfo(index=i, media_type=mt.DOCKER_LAYER, digest=None, size=lay.size,
                            diff_id=lay.diff_id,
                            created_by=history[i] if i < len(history) else "")
                  for i, lay in enumerate(chain)]
        diff_ids = list((cfg.get("rootfs") or {}).get("diff_ids") or [])
        if diff_ids != [lay.diff_id for lay in chain]:
            raise ImageError(f"{source.description}: config diff_ids do not match its layers")
        return SourceImage(source, raw, digest, names=list(image.names),
                           layer_overrides=layers or None)
    except BaseException:
        hold.close()
        raise
