"""``Scanner``: from an image in the store (or a root filesystem directory) to a ``Report``.

Per-file analyzers run layer by layer (cached by diff_id), their results are merged
bottom-up with the whiteout rules, packages are attributed to the layer that introduced
them, then image-wide analyzers run over the merged view. Nothing here prints.
"""

from __future__ import annotations

import datetime as _dt
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from imgscan._version import __version__
from imgscan.analyzers.dispatch import Dispatcher, Results
from imgscan.analyzers.interface import (
    AnalysisResult,
    Analyzer,
    FileInfo,
    ImageView,
    PostAnalyzer,
    ScanOptions,
)
from imgscan.analyzers.registry import (
    LoadedPlugin,
    load_all,
    load_selected,
    select,
    with_always_run,
)
from imgscan.inventory import image_size
from imgscan.model import (
    AnalyzerRef,
    Finding,
    ImageSummary,
    LayerRef,
    LayerSummary,
    Location,
    OSInfo,
    Package,
    Report,
    ScanWarning,
)
from imgscan.purls import package_purl
from imgscan.whiteouts import deletes, split_layer


@dataclass
class ScanStats:
    """What a scan did: analyzer calls per analyzer, cache hits and misses per layer."""

    calls: dict[str, int] = field(default_factory=dict)
    cache_hits: int = 0
    cache_misses: int = 0


@dataclass
class _Layer:
    ref: LayerRef
    root: str
    entries: Sequence[FileInfo]
    results: Results = field(default_factory=dict)

    def has_file(self, path: str) -> bool:
        return path in self._paths

    def __post_init__(self) -> None:
        self._paths = {e.path for e in self.entries if e.is_regular}
        opaques, whiteouts, _ = split_layer(self.entries)
        self.whiteouts, self.opaques = set(whiteouts), set(opaques)


class Scanner:
    def __init__(self, analyzers: Sequence[str] | None = None,
                 options: ScanOptions | None = None, jobs: int | None = None,
                 plugins: Sequence[LoadedPlugin] | None = None) -> None:
        self.options = options or ScanOptions()
        if plugins is not None:
            loaded = list(plugins)
            if analyzers:
                loaded = select(loaded, with_always_run(loaded, analyzers))
        elif analyzers:
            loaded = load_selected(analyzers)
        else:
            loaded = load_all()
        self.plugins = loaded
        self.file_analyzers: list[Analyzer] = [
            p.cls(self.options) for p in loaded if not p.is_post  # type: ignore[misc]
        ]
        self.post_analyzers: list[PostAnalyzer] = [
            p.cls(self.options) for p in loaded if p.is_post  # type: ignore[misc]
        ]
        self.jobs = jobs
        self.stats = ScanStats()

    # -- targets ---------------------------------------------------------------------------
    def scan_image(self, store: Any, image: Any) -> Report:
        """Scan a store image (``Store``, ``ImageRecord``)."""
        from imgscan.analyzers.cache import LayerCache
        from imgscan.analyzers.layered import LayeredView
        from imgscan.images.interface import layer_history
        from imgscan.store.layerindex import load_index

        t0 = time.monotonic()
        config = store.config(image)
        history = layer_history(config)
        layers = []
        for i, chain in enumerate(image.layers):
            ref = LayerRef(i, image.diff_ids[i], history[i] if i < len(history) else "")
            layers.append(_Layer(ref, store.diff_path(chain), load_index(store.index_path(chain))))
        cache = LayerCache(store.path("cache"))
        dispatcher = Dispatcher(self.file_analyzers, self.options, self.jobs)
        from imgscan.progress import Progress

        try:
            with Progress(f"scanning {image.short_id}", len(layers)) as bar:
                for layer in layers:
                    self._analyze_layer(layer, dispatcher, cache)
                    bar.advance(f"layer {layer.ref.index}")
        finally:
            dispatcher.close()
        self._add_calls(dispatcher)
        t1 = time.monotonic()
        view = LayeredView([lay.root for lay in layers], [lay.entries for lay in layers],
                           [lay.ref for lay in layers], config)
        report = self._assemble(view, layers, config, t0, t1, attribute=True)
        report.image = self._image_summary(store, image, config, layers)
        report.layers = self._layer_summaries(store, image, layers, config, report.packages)
        return report

    def scan_dir(self, path: str) -> Report:
        """Scan an unpacked root filesystem: one pseudo-layer, no cache."""
        from imgscan.analyzers.view import DirView

        root = os.path.abspath(path)
        if not os.path.isdir(root):
            from imgscan.errors import ImgscanError

            raise ImgscanError(f"dir:{path}: not a directory")
        t0 = time.monotonic()
        view = DirView(root)
        # streamed: a directory of a million files is never held as a list
        layer = _Layer(LayerRef(0, "", "rootfs directory"), root, [])
        dispatcher = Dispatcher(self.file_analyzers, self.options, self.jobs)
        from imgscan.progress import Progress

        try:
            with Progress(f"scanning dir:{path}", 0, unit="files") as bar:
                layer.results = dispatcher.run(root, None, _counted(view.entries(), bar))
        finally:
            dispatcher.close()
        self._add_calls(dispatcher)
        t1 = time.monotonic()
        visible = {p: 0 for by_path in layer.results.values() for p in by_path}
        report = self._assemble(view, [layer], {}, t0, t1, attribute=False, visible=visible)
        report.image = ImageSummary(name=f"dir:{root}", source="dir")  # absolute
        return report

    def scan_config_only(self, image: Any) -> Report:
        """Pre-pull vetting: run the image-wide analyzers over a view with the config and no
        files (``SourceImage``; only its manifest and config have been fetched)."""
        from imgscan.analyzers.view import ConfigOnlyView
        from imgscan.images.interface import layer_history

        t0 = time.monotonic()
        history = layer_history(image.config)
        refs = [LayerRef(lay.index, lay.diff_id, history[i] if i < len(history) else "")
                for i, lay in enumerate(image.layers)]
        view = ConfigOnlyView(image.config, refs)
        report = self._assemble(view, [], image.config, t0, t0, attribute=True, visible={})
        inner = image.config.get("config") or {}
        report.image = ImageSummary(
            name=image.names[0] if image.names else "",
            id=image.image_id,
            digest=image.index_digest or image.manifest_digest,
            os=str(image.config.get("os") or ""),
            architecture=str(image.config.get("architecture") or ""),
            variant=str(image.config.get("variant") or ""),
            created=str(image.config.get("created") or ""),
            size=sum(lay.size for lay in image.layers),
            user=str(inner.get("User") or ""),
            names=tuple(image.names),
            source="registry-config",
        )
        report.layers = [LayerSummary(index=r.index, diff_id=r.diff_id,
                                      digest=image.layers[r.index].digest or "",
                                      size=image.layers[r.index].size, created_by=r.created_by)
                         for r in refs]
        return report

    # -- layers ----------------------------------------------------------------------------
    def _analyze_layer(self, layer: _Layer, dispatcher: Dispatcher, cache: Any) -> None:
        todo = []
        for a in self.file_analyzers:
            hit = cache.get(layer.ref.diff_id, a.name, a.version, a.cache_key())
            if hit is None:
                todo.append(a)
                self.stats.cache_misses += 1
            else:
                layer.results[a.name] = hit
                self.stats.cache_hits += 1
        if not todo:
            return
        fresh = dispatcher.run(layer.root, layer.ref, layer.entries, [a.name for a in todo])
        for a in todo:
            res = fresh.get(a.name, {})
            layer.results[a.name] = res
            cache.put(layer.ref.diff_id, a.name, a.version, a.cache_key(), res)

    def _add_calls(self, dispatcher: Dispatcher) -> None:
        for name, n in dispatcher.calls.items():
            self.stats.calls[name] = self.stats.calls.get(name, 0) + n

    # -- merge -----------------------------------------------------------------------------
    def _assemble(self, view: ImageView, layers: Sequence[_Layer], config: dict[str, Any],
                  t0: float, t1: float, attribute: bool,
                  visible: dict[str, int] | None = None) -> Report:
        hidden_wanted = {a.name for a in self.file_analyzers if a.wants_hidden}
        if visible is None:
            visible = {e.info.path: e.layer.index for e in view.entries() if e.info.is_regular}
        merged = AnalysisResult()
        os_candidates: dict[str, dict[str, OSInfo]] = {}  # analyzer → path → OS
        for path, top in sorted(visible.items()):
            for name, by_path in layers[top].results.items():
                r = by_path.get(path)
                if r is None:
                    continue
                pkgs = [self._attribute(p, path, top, name, layers) if attribute else p
                        for p in r.packages]
                merged.packages.extend(pkgs)
                merged.package_files.extend(r.package_files)
                merged.findings.extend(_place(f, layers[top].ref if attribute else None, None)
                                       for f in r.findings)
                merged.warnings.extend(r.warnings)
                if r.os is not None:
                    os_candidates.setdefault(name, {})[path] = r.os
                for k, rows in r.facts.items():
                    merged.facts.setdefault(k, []).extend(rows)
        if self.options.hidden and attribute:
            merged.findings.extend(self._hidden_findings(view, layers, hidden_wanted))
        os_info = self._choose_os(os_candidates)
        packages = _attach_files(merged.packages, merged.package_files)
        packages = [replace(p, purl=p.purl or package_purl(p, os_info)) for p in packages]
        t2 = time.monotonic()
        for post in self.post_analyzers:
            post.facts = {k: merged.facts[k] for k in post.facts_wanted if k in merged.facts}
            try:
                r = post.post_analyze(view, packages, os_info)
            except Exception as e:
                r = AnalysisResult(warnings=[ScanWarning(
                    f"analyzer failed: {type(e).__name__}: {e}", analyzer=post.name)])
            merged.findings.extend(r.findings)
            merged.warnings.extend(r.warnings)
            for k, rows in r.facts.items():
                merged.facts.setdefault(k, []).extend(rows)
        for post in self.post_analyzers:
            if post.refines:
                _refine(merged.facts, post.name, post.refines)
        if not attribute:  # a plain directory has no layers: no finding may name one
            merged.findings = [replace(f, location=replace(f.location, layer=None,
                                                           hidden_by=None))
                               for f in merged.findings]
        findings = _dedupe([f.with_id() for f in _fold_links(merged.findings, layers,
                                                             visible)])
        t3 = time.monotonic()
        return Report(
            tool={
                "name": "imgscan",
                "version": __version__,
                "analyzers": [AnalyzerRef(p.name, p.version, p.spec.distribution)
                              for p in self.plugins],
            },
            image=ImageSummary(),
            os=os_info,
            packages=sorted(packages, key=_package_order),
            findings=sorted(findings, key=_finding_order),
            warnings=sorted(merged.warnings, key=lambda w: (w.path, w.analyzer, w.message)),
            facts={k: sorted(v, key=lambda r: str(r.get("path", ""))) for k, v in
                   sorted(merged.facts.items())},
            timings={"analyze": round(t1 - t0, 4), "merge": round(t2 - t1, 4),
                     "post": round(t3 - t2, 4), "total": round(t3 - t0, 4)},
            created=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        )

    def _attribute(self, pkg: Package, path: str, top: int, analyzer: str,
                   layers: Sequence[_Layer]) -> Package:
        """The layer that introduced a package: the lowest layer from which the database
        file carried it without interruption up to the layer that is visible."""
        introduced = top
        for k in range(top - 1, -1, -1):
            lay = layers[k]
            if lay.has_file(path):
                r = lay.results.get(analyzer, {}).get(path)
                if r is not None and any(p.key == pkg.key for p in r.packages):
                    introduced = k
                    continue
                break
            if deletes(path, lay.whiteouts, lay.opaques):
                break
        return replace(pkg, layer=layers[introduced].ref)

    def _hidden_findings(self, view: ImageView, layers: Sequence[_Layer],
                         wanted: set[str]) -> list[Finding]:
        out = []
        for entry in view.hidden_entries():
            if not entry.info.is_regular:
                continue
            lay = layers[entry.layer.index]
            for name in wanted:
                r = lay.results.get(name, {}).get(entry.info.path)
                if r is None:
                    continue
                out.extend(_place(f, lay.ref, entry.hidden_by) for f in r.findings)
        return out

    def _choose_os(self, candidates: dict[str, dict[str, OSInfo]]) -> OSInfo | None:
        """Each analyzer that reported an OS chooses among its own candidates (the OS analyzer
        knows which release file to trust); the first analyzer with an answer wins."""
        classes = {a.name: type(a) for a in self.file_analyzers}
        for name in sorted(candidates):
            cls = classes.get(name)
            chosen = cls.choose_os(candidates[name]) if cls else None
            if chosen is not None:
                return chosen
        return None

    # -- summaries -------------------------------------------------------------------------
    def _image_summary(self, store: Any, image: Any, config: dict[str, Any],
                       layers: Sequence[_Layer]) -> ImageSummary:
        inner = config.get("config") or {}
        return ImageSummary(
            name=image.names[0] if image.names else image.short_id,
            id=image.id,
            digest=image.manifest_digest,
            os=image.os,
            architecture=image.architecture,
            variant=image.variant,
            created=image.created,
            size=image_size(store, image),
            user=str(inner.get("User") or ""),
            names=tuple(image.names),
            source="image",
        )

    def _layer_summaries(self, store: Any, image: Any, layers: Sequence[_Layer],
                         config: dict[str, Any], packages: Sequence[Package]
                         ) -> list[LayerSummary]:
        created = [str(h.get("created") or "") for h in config.get("history") or []
                   if isinstance(h, dict) and not h.get("empty_layer")]
        out = []
        for lay, chain in zip(layers, image.layers, strict=True):
            i = lay.ref.index
            rec = store.layer(chain)
            out.append(LayerSummary(
                index=i,
                diff_id=lay.ref.diff_id,
                digest=image.layer_digests[i] or "",
                size=rec.size,
                created_by=lay.ref.created_by,
                created=created[i] if i < len(created) else "",
                entries=rec.entries,
                packages_added=sum(1 for p in packages if p.layer and p.layer.index == i),
            ))
        return out


def _counted(entries: Any, bar: Any) -> Any:
    """The entries' FileInfos, counted on the progress line as they stream past."""
    for e in entries:
        bar.done += 1
        yield e.info


def _refine(facts: dict[str, list[dict[str, Any]]], update: str, target: str) -> None:
    """Merge the rows of table ``update`` into table ``target`` by path; drop ``update``."""
    rows = facts.pop(update, None)
    if not rows or target not in facts:
        return
    by_path = {r.get("path"): r for r in rows}
    facts[target] = [{**r, **by_path.get(r.get("path"), {})} for r in facts[target]]


def _place(f: Finding, layer: LayerRef | None, hidden_by: LayerRef | None) -> Finding:
    loc = f.location
    return replace(f, location=Location(
        path=loc.path, line=loc.line, column=loc.column,
        layer=loc.layer or layer, hidden_by=loc.hidden_by or hidden_by,
        config_key=loc.config_key))


def _fold_links(findings: Sequence[Finding], layers: Sequence[_Layer],
                visible: dict[str, int]) -> list[Finding]:
    """A file with hard links is one file: one finding listing every name (hardlinks.py)."""
    from imgscan.hardlinks import fold_hard_links, link_groups

    return fold_hard_links(findings, {lay.ref.index: link_groups(lay.entries)
                                      for lay in layers}, visible)


def _dedupe(findings: Sequence[Finding]) -> list[Finding]:
    """One finding per stable id: a hidden copy of something still visible adds nothing;
    two hidden copies from different layers both stay (ids differ by layer)."""
    visible_ids = {f.id for f in findings if f.location.hidden_by is None}
    out: dict[str, Finding] = {}
    for f in findings:
        if f.location.hidden_by is not None:
            if f.id in visible_ids:
                continue
            layer = f.location.layer.diff_id if f.location.layer else ""
            f = replace(f, id=replace(f, id="", properties={
                **f.properties, "fingerprint": f"{f.evidence_fingerprint()}@{layer}"}
            ).with_id().id)
        out.setdefault(f.id, f)
    return list(out.values())


def _attach_files(packages: Sequence[Package], files: Sequence[Any]) -> list[Package]:
    if not files:
        return list(packages)
    by_key: dict[tuple[str, str, str], list[str]] = {}
    by_name: dict[tuple[str, str], list[str]] = {}
    for pf in files:
        by_key.setdefault((pf.type, pf.name, pf.arch), []).extend(pf.files)
        by_name.setdefault((pf.type, pf.name), []).extend(pf.files)
    out = []
    for p in packages:
        extra = by_key.get((p.type, p.name, p.arch)) or by_name.get((p.type, p.name))
        if extra:
            p = replace(p, files=tuple(sorted(set(p.files) | set(extra))))
        out.append(p)
    return out


def _package_order(p: Package) -> tuple[Any, ...]:
    return (p.type, p.name, p.version, p.arch, p.locations)


def _finding_order(f: Finding) -> tuple[Any, ...]:
    return (-f.severity.rank, f.category, f.rule_id, f.location.path,
            f.location.config_key, f.location.line or 0, f.id)
