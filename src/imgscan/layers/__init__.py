"""Layers as a scan consumes them: "the files of one layer, in tar order, with their original
metadata and a way to read their bytes once".

One interface (``Layer``, ``LayerMember`` in ``imgscan.layers.interface``) and its sources:

* ``BlobLayer`` (``imgscan.layers.blob``): a layer blob streamed from any image source (OCI
  layout, archive, registry) — decompressed, walked, verified, never unpacked;
* ``ArrivingLayer`` (``imgscan.layers.sequential``): a layer of a stream that carries a
  whole image (a Docker Engine's save stream), walked once as it passes, hashed on the way;
* ``StoredLayer`` (``imgscan.layers.stored``): a layer extracted in imgscan's store
  (directory plus its tar index);
* a containers/storage ``diff/`` directory (``imgscan.cstorage``) implements the same ABC.

The scanner receives an image's config and a list of these plain values; it never reaches
into a store. Nothing here imports the store, the analyzers or the writers.
"""

from imgscan.layers.interface import Layer, LayerLimits, LayerMember

__all__ = ["Layer", "LayerLimits", "LayerMember"]
