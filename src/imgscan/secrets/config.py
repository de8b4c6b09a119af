"""Secrets in the image config: Env values, labels, Cmd/Entrypoint and history lines.

``docker history`` shows every ``ENV DB_PASSWORD=…`` and ``ARG`` value of a build to anyone
who pulls the image, so the config is scanned with the same rules as files. Each value is
scanned on its own, and findings name where in the config it is (``Env[2]``,
``Labels.org.example.token``, ``history[5]``).

This module returns findings; the ``secrets-config`` analyzer (``imgscan.analyzers.secrets``)
wraps them in analyzer results, so the secrets engine never imports the analyzer framework.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from imgscan.model import Finding, LayerRef, Location
from imgscan.secrets.engine import Match, SecretScanner
from imgscan.secrets.findings import match_to_finding

#: longest config value scanned (a label holding a whole file is still bounded)
MAX_VALUE = 1 << 20


def config_values(config: Mapping[str, Any]) -> Iterator[tuple[str, str, int | None]]:
    """``(config_key, text, history_index)`` for every scannable value. Accepts the OCI image
    config (``{"config": {...}, "history": [...]}``) or a bare runtime config."""
    inner = config.get("config") if isinstance(config.get("config"), Mapping) else None
    if inner is None and any(k in config for k in ("Env", "Labels", "Cmd", "Entrypoint")):
        inner = config
    inner = inner or {}
    env = inner.get("Env") or []
    if isinstance(env, list):
        for i, item in enumerate(env):
            if isinstance(item, str):
                name, _, value = item.partition("=")
                # both spellings, so the env rule and the quoted-assignment rules see it
                yield f"Env[{i}]", f'{item}\n{name}="{value}"', None
    labels = inner.get("Labels") or {}
    if isinstance(labels, Mapping):
        for k, v in labels.items():
            if isinstance(v, str):
                yield f"Labels.{k}", f'{k}={v}\n{k}="{v}"\n{v}', None
    for key in ("Cmd", "Entrypoint"):
        val = inner.get(key)
        if isinstance(val, list):
            yield key, " ".join(str(x) for x in val), None
        elif isinstance(val, str):
            yield key, val, None
    history = config.get("history") or []
    if isinstance(history, list):
        for i, h in enumerate(history):
            if isinstance(h, Mapping):
                for fld in ("created_by", "comment"):
                    text = h.get(fld)
                    if isinstance(text, str) and text:
                        suffix = "" if fld == "created_by" else ".comment"
                        yield f"history[{i}]{suffix}", text, i


def history_layers(config: Mapping[str, Any], layers: Sequence[LayerRef]) -> dict[int, LayerRef]:
    """Map history indexes to the layers they created (entries with ``empty_layer`` make
    none), so a finding in ``history[5]`` can name its layer."""
    out: dict[int, LayerRef] = {}
    history = config.get("history") or []
    if not isinstance(history, list):
        return out
    k = 0
    for i, h in enumerate(history):
        if isinstance(h, Mapping) and h.get("empty_layer"):
            continue
        if k < len(layers):
            out[i] = layers[k]
        k += 1
    return out


def config_findings(config: Mapping[str, Any], scanner: SecretScanner,
                    layers: Sequence[LayerRef] = (), show_secrets: bool = False
                    ) -> list[Finding]:
    """Secrets in every scannable config value, each placed at its ``config_key`` and, for a
    history line, at the layer that line created."""
    findings: list[Finding] = []
    if not isinstance(config, Mapping):
        return findings
    by_history = history_layers(config, layers)
    for key, text, hidx in config_values(config):
        data = text.encode("utf-8", "surrogateescape")[:MAX_VALUE]
        warnings: list[str] = []
        matches = _dedupe(scanner.scan_bytes(data, "", warnings))
        layer = by_history.get(hidx) if hidx is not None else None
        for m in matches:
            loc = Location(config_key=key, layer=layer)
            findings.append(_finding(m, loc, show_secrets))
    return findings


def _dedupe(matches: list[Match]) -> list[Match]:
    """One finding per secret per config value (the value is scanned in two spellings)."""
    best: dict[bytes, Match] = {}
    for m in matches:
        cur = best.get(m.secret)
        if cur is None or m.severity > cur.severity:
            best[m.secret] = m
    return sorted(best.values(), key=lambda m: (m.start, m.rule_id))


def _finding(m: Match, loc: Location, show: bool) -> Finding:
    return match_to_finding(m, loc, show)


def load_config(text: str) -> Mapping[str, Any]:
    """Parse a config blob for tests and the CLI; a clear ValueError on bad JSON."""
    doc = json.loads(text)
    if not isinstance(doc, Mapping):
        raise ValueError("image config is not a JSON object")
    return doc
