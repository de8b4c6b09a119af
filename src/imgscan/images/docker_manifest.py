"""The items of a docker-archive's ``manifest.json`` (FORMATS.md §2): key spelling, RepoTags
and the choice of one image by tag or position. Kept apart from the tar reading so that the
rules docker applies to this file are in one place."""

from __future__ import annotations

from typing import Any

from imgscan.errors import BadReferenceError, ImageError
from imgscan.images.reference import normalize_docker_name

__all__ = ["canonical_keys", "choose_item", "manifest_item", "str_list", "with_tag"]

#: manifest.json keys in the spelling docker writes; others are matched to them by case
_MANIFEST_KEYS = ("Config", "RepoTags", "Layers", "LayerSources", "Parent")


def str_list(v: Any, what: str) -> list[str]:
    """A list of strings from JSON (absent or null is empty); anything else is refused,
    since a RepoTags or Layers of another shape would be guessed at."""
    if v is None:
        return []
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ImageError(f"{what} is not a list of strings")
    return list(v)


def canonical_keys(item: dict[str, Any]) -> dict[str, Any]:
    """A manifest.json item with docker's spelling of its keys: Go matches a JSON key to a
    field without regard to case, preferring the exact spelling, so docker and skopeo read
    Jib's ``config``/``repoTags``/``layers`` as ``Config``/``RepoTags``/``Layers``."""
    out = dict(item)
    for key in _MANIFEST_KEYS:
        if key in item:
            continue
        folded = next((k for k in item if k.lower() == key.lower()), None)
        if folded is not None:
            out[key] = item[folded]
    return out


def with_tag(name: str) -> str:
    """A RepoTags entry with its tag: docker reads ``name`` with no tag as ``name:latest``
    (a digest reference stays as it is)."""
    if "@" in name or name.rfind(":") > name.rfind("/"):
        return name
    return f"{name}:latest"


def choose_item(items: list[dict[str, Any]], ref: str | None, index: int | None,
                what: str) -> dict[str, Any]:
    """The item ``@index`` or tagged ``ref`` (compared in normalised form), or the only one;
    an error that lists what is available otherwise."""

    def label(i: int, item: dict[str, Any]) -> str:
        tags = str_list(item.get("RepoTags"), f"{what}: manifest.json[{i}].RepoTags")
        return f"@{i}" + (f" {','.join(tags)}" if tags else "")

    available = ", ".join(label(i, it) for i, it in enumerate(items[:20])) or "none"
    if index is not None:
        if not 0 <= index < len(items):
            raise BadReferenceError(
                f"{what}: @{index} is out of range (manifest.json has {len(items)} images)"
            )
        return items[index]
    if ref is not None:
        want = normalize_docker_name(ref)
        for i, item in enumerate(items):
            tags = str_list(item.get("RepoTags"), f"{what}: manifest.json[{i}].RepoTags")
            if any(normalize_docker_name(t) == want for t in tags):
                return item
        raise BadReferenceError(f"{what}: no image tagged {ref!r}; available: {available}")
    if len(items) != 1:
        raise BadReferenceError(
            f"more than one image in {what}, choose one with :REF or @N; available: {available}"
            if items else f"{what}: manifest.json lists no image"
        )
    return items[0]


def manifest_item(raw: bytes, ref: str | None, index: int | None, what: str
                  ) -> tuple[dict[str, Any], str]:
    """The item of ``manifest.json`` (its bytes) chosen by ``ref``/``index`` (or the only
    one), keys in docker's spelling, and its Config name as written."""
    from imgscan.images.interface import load_json

    doc = load_json(raw, f"{what}: manifest.json")
    if not isinstance(doc, list) or not all(isinstance(x, dict) for x in doc):
        raise ImageError(f"{what}: manifest.json is not a list of objects")
    item = choose_item([canonical_keys(x) for x in doc], ref, index, what)
    config_name = item.get("Config")
    if not isinstance(config_name, str) or not config_name:
        raise ImageError(f"{what}: manifest.json item has no Config")
    return item, config_name
