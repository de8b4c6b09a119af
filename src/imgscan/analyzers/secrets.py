"""The secrets analyzers: files of every layer (hidden ones too) and the image config.

``SecretsAnalyzer`` is a per-file analyzer with ``wants_hidden = True``: a key that a later
layer deleted is still in the image tarball, so the framework also offers the files that
upper layers hide and marks the findings ``hidden_by``. Hard-link entries are skipped
because their target is offered as a regular file (one content, one finding).

``SecretsConfigAnalyzer`` scans ``Env``, ``Labels``, ``Cmd``/``Entrypoint`` and history lines
of the image config with the same rules.

Options (``ScanOptions``): ``rule_dirs`` (``--rules``), ``disabled_rules``
(``--disable-rule``), ``show_secrets`` (``--show-secrets``), ``scan_binaries``
(``--scan-binaries``); ``extra["secrets.max_file_size"]`` caps the bytes scanned per file.
"""

from __future__ import annotations

import functools
import posixpath
from collections.abc import Mapping, Sequence
from typing import Any

from imgscan.analyzers.interface import (
    AnalysisResult,
    Analyzer,
    FileInfo,
    FileInput,
    FileKind,
    ImageView,
    PostAnalyzer,
    ScanOptions,
)
from imgscan.model import LayerRef, Location, OSInfo, Package, ScanWarning
from imgscan.secrets.config import config_findings
from imgscan.secrets.engine import SecretScanner
from imgscan.secrets.findings import match_to_finding
from imgscan.secrets.rules import RuleSet, load_rules

#: files up to this size are read through the shared ``FileInput.read``; larger ones stream
READ_WHOLE = 1 << 20
#: files above this are skipped with a warning (a 4 GB log is not where keys live, and a
#: scan must finish); ``extra["secrets.max_file_size"]`` overrides
DEFAULT_MAX_FILE_SIZE = 1 << 30

#: content that is binary or cannot hold a usable credential; skipped without reading
#: unless --scan-binaries
_BINARY_SUFFIXES = frozenset((
    ".so", ".a", ".o", ".ko", ".gz", ".tgz", ".xz", ".txz", ".bz2", ".zst", ".lz4", ".lzma",
    ".zip", ".jar", ".war", ".ear", ".whl", ".egg", ".apk", ".deb", ".rpm", ".iso", ".img",
    ".png", ".jpg", ".jpeg", ".gif", ".bmp", ".ico", ".icns", ".webp", ".tif", ".tiff", ".svgz",
    ".woff", ".woff2", ".ttf", ".otf", ".eot", ".pcf", ".mo", ".gmo", ".pyc", ".pyo", ".class",
    ".dex", ".wasm", ".mp3", ".mp4", ".ogg", ".wav", ".flac", ".avi", ".mkv", ".webm", ".pdf",
    ".sqlite", ".db", ".bin", ".dat", ".pack", ".idx", ".cache", ".node",
))
_SKIP_DIRS = ("usr/share/locale/", "usr/share/zoneinfo/", "usr/share/icons/",
              "usr/share/fonts/", "usr/share/mime/", "usr/share/i18n/", "usr/share/terminfo/",
              "usr/lib/locale/", "proc/", "sys/", "dev/")


@functools.lru_cache(maxsize=8)
def _rules_for(rule_dirs: tuple[str, ...], disabled: tuple[str, ...]) -> RuleSet:
    return load_rules(rule_dirs, disabled)


def _cached_rules(options: ScanOptions) -> RuleSet:
    """Both analyzers (and every worker's copy) share one load per option set (~0.1 s)."""
    return _rules_for(tuple(options.rule_dirs), tuple(options.disabled_rules))


class _RulesMixin:
    options: ScanOptions
    _scanner: SecretScanner | None = None

    @property
    def scanner(self) -> SecretScanner:
        if self._scanner is None:
            self._scanner = SecretScanner(_cached_rules(self.options),
                                          scan_binaries=self.options.scan_binaries)
        return self._scanner

    @property
    def ruleset(self) -> RuleSet:
        return self.scanner.ruleset

    def cache_key(self) -> str:
        """The rules digest plus every option that changes results or evidence."""
        o = self.options
        return (f"{self.ruleset.digest}:bin={int(o.scan_binaries)}:"
                f"show={int(o.show_secrets)}:max={_max_size(o)}")

    def __getstate__(self) -> dict[str, Any]:
        # worker processes rebuild the scanner from the options (cheaper than pickling it)
        state = dict(self.__dict__)
        state["_scanner"] = None
        return state


def _max_size(options: ScanOptions) -> int:
    try:
        return int(options.extra.get("secrets.max_file_size", DEFAULT_MAX_FILE_SIZE))
    except (TypeError, ValueError):
        return DEFAULT_MAX_FILE_SIZE


class SecretsAnalyzer(_RulesMixin, Analyzer):
    """Secrets in every regular file of every layer, including files later layers hide."""

    name = "secrets"
    version = 1
    description = "secret rules (rules/secrets) over file contents, hidden files included"
    wants_hidden = True
    max_read = READ_WHOLE

    def __init__(self, options: ScanOptions | None = None) -> None:
        super().__init__(options)
        self._scanner = None

    def required(self, info: FileInfo) -> bool:
        if info.kind != FileKind.FILE or info.size <= 0:
            return False  # hard links: their target is scanned; nothing else has content
        path = info.path
        if path.startswith(_SKIP_DIRS):
            return False
        if not self.options.scan_binaries:
            ext = posixpath.splitext(path)[1].lower()
            if ext in _BINARY_SUFFIXES or ".so." in posixpath.basename(path):
                return False
        return True

    def analyze(self, file: FileInput) -> AnalysisResult | None:
        info = file.info
        result = AnalysisResult()
        limit = _max_size(self.options)
        if info.size > limit:
            result.warnings.append(ScanWarning(
                f"not scanned for secrets: {info.size} bytes is above the "
                f"{limit}-byte limit", path=info.abspath, analyzer=self.name, layer=file.layer))
            return result
        warnings: list[str] = []
        try:
            if info.size <= READ_WHOLE:
                matches = self.scanner.scan_bytes(file.read(READ_WHOLE), info.path, warnings)
            else:
                with file.open() as f:
                    matches = self.scanner.scan_stream(f, info.path, warnings)
        except OSError as e:
            result.warnings.append(ScanWarning(f"cannot read: {e.strerror or e}",
                                               path=info.abspath, analyzer=self.name,
                                               layer=file.layer))
            return result
        show = self.options.show_secrets
        for m in matches:
            loc = Location(path=info.abspath, line=m.line, column=m.column, layer=file.layer)
            result.findings.append(match_to_finding(m, loc, show))
        for w in warnings:
            result.warnings.append(ScanWarning(w, path=info.abspath, analyzer=self.name,
                                               layer=file.layer))
        return result if not result.is_empty() else None


def scan_config(config: Mapping[str, Any], scanner: SecretScanner,
                layers: Sequence[LayerRef] = (), show_secrets: bool = False) -> AnalysisResult:
    """The config's secrets as an analyzer result (the engine's ``config_findings``)."""
    return AnalysisResult(findings=config_findings(config, scanner, layers, show_secrets))


class SecretsConfigAnalyzer(_RulesMixin, PostAnalyzer):
    """Secrets in the image config: Env, Labels, Cmd/Entrypoint, history."""

    name = "secrets-config"
    version = 1
    description = "secret rules over the image config (Env, Labels, history created_by)"

    def __init__(self, options: ScanOptions | None = None) -> None:
        super().__init__(options)
        self._scanner = None

    def post_analyze(self, view: ImageView, packages: Sequence[Package],
                     os: OSInfo | None) -> AnalysisResult:
        config = getattr(view, "config", None) or {}
        layers = getattr(view, "layers", ()) or ()
        return scan_config(config, self.scanner, layers, self.options.show_secrets)
