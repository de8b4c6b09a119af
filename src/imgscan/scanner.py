"""``Scanner``: from an image in the store (or a root filesystem directory) to a ``Report``.

Per-file analyzers run layer by layer (cached by diff_id), their results are merged
bottom-up with the whiteout rules, packages are attributed to the layer that introduced
them, then image-wide analyzers run over the merged view. Nothing here prints.
"""

from __future__ import annotations

import datetime as _dt
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from imgscan._version import __version__
from imgscan.analyzers.identity import Identity
from imgscan.analyzers.interface import (
    AnalysisResult,
    Analyzer,
    FileInfo,
    ImageView,
    PostAnalyzer,
    ScanOptions,
)
from imgscan.analyzers.pluginset import PluginSet
from imgscan.analyzers.registry import LoadedPlugin
from imgscan.entrytable import as_table
from imgscan.merge import attach_files, fact_order, finding_order, package_order, refine_facts
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
from imgscan.whiteouts import deletes

if TYPE_CHECKING:  # the worker pool is imported when a layer is analyzed, not on a cache hit
    from imgscan.analyzers.dispatch import Dispatcher, Results


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
        r = self.table.find(path)
        return r >= 0 and self.table.is_regular(r)

    def __post_init__(self) -> None:
        self.set_entries(self.entries)

    def set_entries(self, entries: Sequence[FileInfo]) -> None:
        """The layer's index, held as a table (no object, no set entry per file)."""
        self.entries = self.table = as_table(entries)
        opaques, whiteouts = self.table.markers()
        self.whiteouts, self.opaques = set(whiteouts), set(opaques)


class Scanner:
    """Scans images with the analyzer plugins. Which analyzers run (and what the report key
    needs of them) is known from ``analyzers.identity`` without importing any when it can:
    the plugins are loaded when a file or an image-wide analyzer actually has to run."""

    def __init__(self, analyzers: Sequence[str] | None = None,
                 options: ScanOptions | None = None, jobs: int | None = None,
                 plugins: Sequence[LoadedPlugin] | None = None,
                 shared_cache: Any = None) -> None:
        #: a second cache level behind the store's (``ResultCache``; Redis for a fleet)
        self.shared_cache = shared_cache
        self.options = options or ScanOptions()
        self.jobs = jobs
        self.stats = ScanStats()
        self._set = PluginSet(analyzers, self.options, plugins)

    @property
    def plugins(self) -> list[LoadedPlugin]:
        return self._set.load().loaded or []

    @property
    def file_analyzers(self) -> list[Analyzer]:
        return self._set.load().file

    @property
    def post_analyzers(self) -> list[PostAnalyzer]:
        return self._set.load().post

    def identities(self) -> list[Identity]:
        return self._set.identities()

    # -- targets ---------------------------------------------------------------------------
    def scan_image(self, store: Any, image: Any) -> Report:
        """Scan a store image (``Store``, ``ImageRecord``): its layers as ``StoredLayer``s,
        built by the API (the scanner itself never reaches into a store)."""
        from imgscan.layers.stored import stored_image_layers

        config, layers, summary = stored_image_layers(store, image)
        cache_root = store.path("cache")
        return self.scan_layers(config, layers, summary, cache_root)

    def scan_layers(self, config: dict[str, Any], layers: Sequence[Any],
                    image: ImageSummary, cache_root: str | None = None) -> Report:
        """Scan an image given as plain values: its config and its ``Layer``s (any source:
        a blob stream, a stored layer, a containers/storage diff directory). Per-layer
        results (and a streamed layer's entry index) are cached under ``cache_root``."""
        t0 = time.monotonic()
        key = None
        if cache_root:
            from imgscan.analyzers import reportcache

            known = self.identities()
            key = reportcache.report_key(config, layers, image, known, self.options,
                                         __version__)
            hit = reportcache.get(cache_root, key)
            if hit is not None:
                fresh = self.from_cache(hit, len(layers), known, t0)
                return reportcache.mark(fresh, cache_root, key)
        from imgscan.analyzers.layerview import LayerSetView
        from imgscan.analyzers.stream import capture_patterns

        patterns = capture_patterns(self.post_analyzers)
        state = [_Layer(lay.ref, lay.directory() or "", []) for lay in layers]
        captured: list[dict[str, bytes]] = [{} for _ in layers]
        from imgscan.progress import Progress

        label = (image.id.split(":")[-1][:12] if image.id else "") or image.name
        with Progress(f"scanning {label}", len(layers)) as bar:
            self._analyze_layers(layers, state, captured, patterns, cache_root, bar)
        t1 = time.monotonic()
        view = LayerSetView([lay.directory() for lay in layers], [s.entries for s in state],
                            [s.ref for s in state], captured, config)
        report = self._assemble(view, state, config, t0, t1, attribute=True)
        report.image = image
        created = [str(h.get("created") or "") for h in config.get("history") or []
                   if isinstance(h, dict) and not h.get("empty_layer")]
        report.layers = [LayerSummary(
            index=s.ref.index, diff_id=s.ref.diff_id, digest=lay.digest or "",
            size=lay.size, created_by=s.ref.created_by,
            created=created[i] if i < len(created) else "", entries=len(s.entries),
            packages_added=sum(1 for p in report.packages
                               if p.layer and p.layer.index == s.ref.index))
            for i, (lay, s) in enumerate(zip(layers, state, strict=True))]
        if key is not None and reportcache.cacheable(report):
            key = reportcache.report_key(config, layers, image, self.identities(),
                                         self.options, __version__)  # as loaded
            if reportcache.put(cache_root, key, report):  # type: ignore[arg-type]
                reportcache.mark(report, cache_root, key)  # type: ignore[arg-type]
        return report

    def _analyze_layers(self, layers: Sequence[Any], state: list[_Layer],
                        captured: list[dict[str, bytes]], patterns: tuple[str, ...],
                        cache_root: str | None, bar: Any) -> None:
        """Fill each ``_Layer`` with results and entries: from the cache where it has them,
        else a stored layer through the dispatcher (files read in place, in parallel) and
        a streamed layer through one walk of its stream (layers in parallel)."""
        from imgscan.analyzers.dispatch import Dispatcher
        from imgscan.analyzers.stream import analyze_layers, capture_matcher

        cache, icache = self.layer_caches(cache_root)
        key = "\n".join(patterns)
        todo: dict[int, list[Analyzer]] = {}
        need_index: dict[int, bool] = {}
        for i, (lay, s) in enumerate(zip(layers, state, strict=True)):
            missing = []
            for a in self.file_analyzers:
                hit = cache.get(s.ref.diff_id, a.name, a.version, a.cache_key()) \
                    if cache else None
                if hit is None:
                    missing.append(a)
                    self.stats.cache_misses += 1
                else:
                    s.results[a.name] = hit
                    self.stats.cache_hits += 1
            known = lay.entries()
            if known is not None:
                s.set_entries(known)
            else:
                got = icache.get(s.ref.diff_id, key) if icache else None
                if got is not None:
                    s.set_entries(got[0])
                    captured[i] = got[1]
                need_index[i] = got is None
            if missing or need_index.get(i):
                todo[i] = missing
            else:
                bar.advance(f"layer {i} (cached)")
        stored = [i for i in todo if layers[i].directory()]
        streamed = [i for i in todo if not layers[i].directory()]
        if stored:
            dispatcher = Dispatcher(self.file_analyzers, self.options, self.jobs)
            try:
                for i in stored:
                    fresh = dispatcher.run(state[i].root, state[i].ref, state[i].entries,
                                           [a.name for a in todo[i]])
                    self._keep(state[i], todo[i], fresh, cache)
                    bar.advance(f"layer {i}")
            finally:
                dispatcher.close()
            self._add_calls(dispatcher)
        if streamed:
            outcomes = analyze_layers([layers[i] for i in streamed],
                                      [todo[i] for i in streamed], capture_matcher(patterns),
                                      [True for _ in streamed], self.jobs or os.cpu_count() or 1)
            for k, i in enumerate(streamed):
                out = outcomes[k]
                for name, n in out.calls.items():
                    self.stats.calls[name] = self.stats.calls.get(name, 0) + n
                self._keep(state[i], todo[i], out.results, cache)
                state[i].set_entries(out.entries)
                captured[i] = out.captured
                if icache is not None and need_index.get(i):
                    icache.put(state[i].ref.diff_id, key, out.entries, out.captured)
                bar.advance(f"layer {i}")

    def layer_caches(self, cache_root: str | None) -> tuple[Any, Any]:
        """The per-layer result cache (the store's, with the shared level behind it) and the
        streamed layers' index cache; (None, None) without a cache root."""
        from imgscan.analyzers.cache import ChainedCache, LayerCache, LayerIndexCache

        if not cache_root:
            return None, None
        cache: Any = LayerCache(cache_root)
        if self.shared_cache is not None:
            cache = ChainedCache(cache, self.shared_cache)
        return cache, LayerIndexCache(cache_root)

    def from_cache(self, hit: Report, layers: int, known: Sequence[Identity],
                   t0: float) -> Report:
        """A cached report as this scan's (its timings and date now)."""
        self.stats.cache_hits += layers * sum(not k.is_post for k in known)
        return replace(hit, timings={"analyze": 0.0, "merge": 0.0, "post": 0.0,
                                     "total": round(time.monotonic() - t0, 4)},
                       created=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))

    @staticmethod
    def _keep(layer: _Layer, analyzers: Sequence[Analyzer], fresh: Results,
              cache: Any) -> None:
        for a in analyzers:
            res = fresh.get(a.name, {})
            layer.results[a.name] = res
            if cache is not None:
                cache.put(layer.ref.diff_id, a.name, a.version, a.cache_key(), res)

    def scan_dir(self, path: str) -> Report:
        """Scan an unpacked root filesystem: one pseudo-layer, no cache."""
        from imgscan.analyzers.dispatch import Dispatcher
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
        from imgscan.hardlinks import link_groups

        report = self._assemble(view, [layer], {}, t0, t1, attribute=False, visible=visible,
                                links={None: link_groups(view.hard_links())})
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
    def _add_calls(self, dispatcher: Dispatcher) -> None:
        for name, n in dispatcher.calls.items():
            self.stats.calls[name] = self.stats.calls.get(name, 0) + n

    # -- merge -----------------------------------------------------------------------------
    def _assemble(self, view: ImageView, layers: Sequence[_Layer], config: dict[str, Any],
                  t0: float, t1: float, attribute: bool,
                  visible: Mapping[str, int] | None = None,
                  links: dict[int | None, dict[str, str]] | None = None) -> Report:
        """The report of analyzed layers. ``links`` (a directory scan's hard-link groups,
        see ``DirView.hard_links``) replaces the groups the layers' tar entries give."""
        hidden_wanted = {a.name for a in self.file_analyzers if a.wants_hidden}
        if visible is None:  # only paths with results: not one key per file of the image
            from imgscan.analyzers.layered import LayeredView, VisibleFiles

            assert isinstance(view, LayeredView)
            visible = VisibleFiles(view, sorted({p for lay in layers
                                                 for by_path in lay.results.values()
                                                 for p in by_path}))
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
        from imgscan.purls import package_purl

        packages = attach_files(merged.packages, merged.package_files)
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
                refine_facts(merged.facts, post.name, post.refines)
        if not attribute:  # a plain directory has no layers: no finding may name one
            merged.findings = [replace(f, location=replace(f.location, layer=None,
                                                           hidden_by=None))
                               for f in merged.findings]
        findings = _dedupe([f.with_id() for f in _fold_links(merged.findings, layers,
                                                             visible, links)])
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
            packages=sorted(packages, key=package_order),
            findings=sorted(findings, key=finding_order),
            warnings=sorted(merged.warnings, key=lambda w: (w.path, w.analyzer, w.message)),
            facts={k: sorted(v, key=fact_order) for k, v in
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
        out: list[Finding] = []
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


def _counted(entries: Any, bar: Any) -> Any:
    """The entries' FileInfos, counted on the progress line as they stream past."""
    for e in entries:
        bar.done += 1
        yield e.info


def _place(f: Finding, layer: LayerRef | None, hidden_by: LayerRef | None) -> Finding:
    loc = f.location
    return replace(f, location=Location(
        path=loc.path, line=loc.line, column=loc.column,
        layer=loc.layer or layer, hidden_by=loc.hidden_by or hidden_by,
        config_key=loc.config_key))


def _fold_links(findings: Sequence[Finding], layers: Sequence[_Layer],
                visible: Mapping[str, int],
                links: dict[int | None, dict[str, str]] | None) -> list[Finding]:
    """A file with hard links is one file: one finding listing every name (hardlinks.py).
    A directory's groups (``links``) are all visible: it has no upper layer."""
    from imgscan.hardlinks import fold_hard_links, link_groups

    if links is not None:
        return fold_hard_links(findings, links)
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
