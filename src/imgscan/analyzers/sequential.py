"""Analyze an image whose layers arrive one after another in one stream, as they arrive.

A Docker Engine sends an image as one ``docker save`` tar (``images.docker_stream``), layers
in an order of its own and the map of that order (``manifest.json``) last. Each layer is
analyzed in this process straight from the stream, with ``stream.analyze_layer``'s one walk,
while its tar is hashed; a layer whose identity is known before its bytes and whose results
are all cached is read and verified but not analyzed. Only when the stream has ended and
everything checks (manifest present and naming what arrived, config = the image id, every
layer's hash = its diff_id) are the outcomes put in image order, as ``AnalyzedLayer``s the
scanner takes like any other layer (its per-layer caches are written from them then, never
before: results of a layer that fails verification are never cached or used).

Where a finding or fact names its layer, it names the layer as the walk knew it: the config
(``created_by``) may arrive after the layer, and a repeated layer arrives once for several
positions. ``rebind`` gives each position its own ``LayerRef``, so the results are those a
walk of that position would give.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractContextManager
from typing import Any

from imgscan.analyzers.interface import Analyzer, FileInfo
from imgscan.analyzers.stream import LayerOutcome, analyze_layer
from imgscan.errors import DigestMismatch, ImageError
from imgscan.layers.interface import Layer, LayerLimits
from imgscan.model import ImageSummary, LayerRef

#: provisional positions of layers whose identity is not known before their bytes
_UNKNOWN = -1_000_000


class AnalyzedLayer(Layer):
    """A layer of a stream that has passed: its ``outcome`` (None when it was only verified,
    its results being cached) is what the scanner gets instead of a walk."""

    fork_safe = False

    def __init__(self, ref: LayerRef, digest: str, size: int,
                 outcome: LayerOutcome | None) -> None:
        self.ref = ref
        self.digest = digest
        self.size = size
        self.outcome = outcome

    def members(self) -> AbstractContextManager[Any]:
        raise ImageError(f"layer {self.ref.index} ({self.ref.diff_id}) came in a stream that "
                         "has passed, and its cached results are gone; scan again")

    def outcome_for(self, analyzers: Sequence[Analyzer]) -> LayerOutcome:
        """The outcome for ``analyzers`` (the scanner asks only for what it did not find
        cached; the stream's walk ran every analyzer)."""
        out = self.outcome
        if out is None or any(a.name not in out.results for a in analyzers):
            self.members()  # raises: the results the scanner needs are not here
            raise AssertionError  # pragma: no cover
        return LayerOutcome({a.name: out.results[a.name] for a in analyzers}, out.entries,
                            out.captured, out.calls)


def analyze_save_stream(stream: Any, analyzers: Sequence[Analyzer],
                        capture: Callable[[FileInfo], bool], walk: Collection[str],
                        limits: LayerLimits | None = None, bar: Any = None
                        ) -> tuple[dict[str, Any], list[AnalyzedLayer], ImageSummary]:
    """Consume ``stream`` (an ``images.docker_stream.SaveStream``): config, the image's layers
    analyzed, and its summary. Layers whose diff_id is not in ``walk`` (every analyzer's
    results and the entry index are cached) are verified without a walk when their identity
    is known before they arrive. ``bar`` (a ``Progress``) advances once per layer."""
    from imgscan.images.archive import docker_manifest
    from imgscan.images.digest import sha256_digest
    from imgscan.images.interface import layer_history
    from imgscan.layers.blob import image_summary
    from imgscan.layers.sequential import ArrivingLayer

    limits = limits or LayerLimits()
    first = {d: i for i, d in reversed(list(enumerate(stream.diff_ids)))}
    passed: dict[str, tuple[ArrivingLayer, LayerOutcome | None]] = {}
    for k, arrival in enumerate(stream.arrivals()):
        pos = first.get(arrival.diff_id)
        ref = LayerRef(pos if pos is not None else _UNKNOWN - k, arrival.diff_id, "")
        layer = ArrivingLayer(arrival, ref, limits, stream.what)
        if arrival.diff_id and arrival.diff_id not in walk:
            layer.skip()
            passed[arrival.name] = (layer, None)
        else:
            passed[arrival.name] = (layer, analyze_layer(layer, analyzers, capture, True))
        if bar is not None:
            bar.advance(arrival.name)
    saved = stream.finish()
    history = layer_history(saved.config)
    layers = []
    for i, (name, diff_id) in enumerate(zip(saved.layer_names, stream.diff_ids, strict=True)):
        lay, out = passed[name]
        if lay.diff_id != diff_id:
            raise DigestMismatch(f"{stream.what}: layer {i} ({name}) hashes to {lay.diff_id}, "
                                 f"not to its diff_id {diff_id}")
        ref = LayerRef(i, diff_id, history[i] if i < len(history) else "")
        layers.append(AnalyzedLayer(ref, lay.digest, lay.size,
                                    rebind(out, lay.ref, ref) if out is not None else None))
    manifest = docker_manifest(saved.raw_config, [
        {"mediaType": _media(lay), "size": lay.size, "digest": lay.digest}
        for lay, _ in (passed[n] for n in saved.layer_names)])
    summary = image_summary(saved.config, stream.image_id, sha256_digest(manifest),
                            saved.names, sum(lay.size for lay in layers))
    return saved.config, layers, summary


def _media(layer: Any) -> str:
    from imgscan.images import mediatypes as mt

    return mt.DOCKER_LAYER_GZIP if layer.compressed else mt.DOCKER_LAYER


def rebind(out: LayerOutcome, old: LayerRef, new: LayerRef) -> LayerOutcome:
    """``out`` with every mention of layer ``old`` made one of ``new``: ``LayerRef`` values
    anywhere in the results, and facts rows' ``"layer"`` (a position)."""
    if old == new:
        return out
    return LayerOutcome(_swap(out.results, old, new), out.entries, out.captured, out.calls)


def _swap(obj: Any, old: LayerRef, new: LayerRef) -> Any:
    if isinstance(obj, LayerRef):
        return new if obj == old else obj
    if isinstance(obj, dict):
        return {k: new.index if k == "layer" and v == old.index and isinstance(v, int)
                else _swap(v, old, new) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_swap(v, old, new) for v in obj]
    if isinstance(obj, tuple):
        items = [_swap(v, old, new) for v in obj]
        if all(a is b for a, b in zip(items, obj, strict=True)):
            return obj
        return type(obj)(*items) if hasattr(obj, "_fields") else tuple(items)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        changes = {f.name: _swap(getattr(obj, f.name), old, new)
                   for f in dataclasses.fields(obj) if f.init}
        return dataclasses.replace(obj, **changes)
    return obj

