"""Risky image configuration, from the OCI config (FORMATS.md §1.5), not from files.

An image-wide ``PostAnalyzer`` ("image-config") over ``view.config``. It needs the view
only to resolve a ``User`` name through the image's own /etc/passwd. Any field may be
absent or null; a malformed value is a warning, never a crash.

Rule ids (stable) and severities:

* ``config/root-user`` -- medium: the container runs as root (``User`` empty, ``0``,
  ``root``, or a name that the image's /etc/passwd maps to uid 0, with or without a group).
  A breakout or a writable host mount is then root's.
* ``config/remote-add`` -- medium: a build step ``ADD``\\ ed a remote URL: the content was
  fetched at build time without verification (low when ``--checksum=`` pinned it).
* ``config/ssh-port`` -- medium: port 22 is exposed; containers should not run sshd.
* ``config/no-healthcheck`` -- info: no ``Healthcheck`` (or ``NONE``).
* ``config/image-age`` -- low: ``created`` is older than ``max_age_days`` (option
  ``extra["max_age_days"]``, default 365): its packages are likely missing fixes. Epoch-like
  dates (before 1990, written by reproducible builders) are not judged.
* ``config/privileged-label`` -- medium: a label asks operators for a privileged run: the
  Project Atomic ``RUN``/``INSTALL``/``UNINSTALL`` labels (``atomic run`` executes them)
  containing ``--privileged``, host namespaces (``--net=host``, ``--pid=host``,
  ``--ipc=host``), ``--cap-add`` or a bind mount of ``/``; or podman's
  ``io.containers.capabilities`` label (capabilities the image requests).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

from imgscan.analyzers.interface import AnalysisResult, ImageView, PostAnalyzer
from imgscan.model import Finding, LayerRef, Location, OSInfo, Package, ScanWarning, Severity

_CATEGORY = "config"

#: ``ADD`` of a URL in a history line (classic builder: ``/bin/sh -c #(nop) ADD ...``;
#: BuildKit: ``ADD https://... /dst # buildkit``)
_REMOTE_ADD = re.compile(r"(?:^|\s|\))ADD\s+((?:--\S+\s+)*)(?:\S+\s+)*?((?:https?|ftp)://\S+)",
                         re.IGNORECASE)
_ATOMIC_LABELS = ("RUN", "INSTALL", "UNINSTALL", "run", "install", "uninstall")
_PRIV_MARKERS = re.compile(
    r"--privileged\b|--(?:net|network|pid|ipc|uts|userns)[= ]host\b|--cap-add\b|"
    r"(?:-v|--volume)[= ]/:", re.IGNORECASE)
_EPOCH_CUTOFF = datetime(1990, 1, 1, tzinfo=UTC)


def _parse_time(text: str) -> datetime:
    """RFC 3339 with optional fractional seconds of any length (Go writes nanoseconds)."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)", text.strip())
    if not m:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    frac = (m.group(2) or ".0")[:7]
    tz = "+00:00" if m.group(3) == "Z" else m.group(3)
    return datetime.fromisoformat(m.group(1) + frac + tz)


def _obj(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


class ImageConfigAnalyzer(PostAnalyzer):
    """Risky settings in the image config (see the module docstring)."""

    name: ClassVar[str] = "image-config"
    version: ClassVar[int] = 1
    description: ClassVar[str] = "root user, remote ADD, SSH port, healthcheck, age, labels"
    reads: ClassVar[tuple[str, ...]] = ("etc/passwd",)

    def post_analyze(
        self, view: ImageView, packages: Sequence[Package], os: OSInfo | None
    ) -> AnalysisResult:
        res = AnalysisResult()
        cfg = _obj(view.config)
        if not cfg:
            return res
        inner = _obj(cfg.get("config"))
        self._user(view, inner, res)
        self._history(view, cfg, res)
        self._ports(inner, res)
        self._healthcheck(inner, res)
        self._age(cfg, res)
        self._labels(inner, res)
        return res

    def _finding(self, res: AnalysisResult, rule: str, sev: Severity, title: str, key: str,
                 evidence: str, layer: LayerRef | None = None, description: str = "") -> None:
        res.findings.append(Finding(rule_id=rule, severity=sev, category=_CATEGORY,
                                    title=title, location=Location(config_key=key, layer=layer),
                                    evidence=evidence, description=description))

    def _warn(self, res: AnalysisResult, msg: str) -> None:
        res.warnings.append(ScanWarning(message=msg, analyzer=self.name))

    def _user(self, view: ImageView, inner: Mapping[str, Any], res: AnalysisResult) -> None:
        user = inner.get("User") or ""
        if not isinstance(user, str):
            self._warn(res, f"config.User is not a string: {user!r}")
            return
        name = user.split(":", 1)[0].strip()
        root = name in ("", "0", "root")
        if not root and not name.isdigit():
            root = self._passwd_uid(view, name) == 0
        if root:
            shown = user or "(empty: defaults to root)"
            self._finding(res, "config/root-user", Severity.MEDIUM,
                          "Image runs as root", "config.User", f"User={shown}",
                          description="Set USER to an unprivileged uid in the image.")

    @staticmethod
    def _passwd_uid(view: ImageView, name: str) -> int | None:
        try:
            data = view.read("etc/passwd", limit=4 << 20) or b""
        except OSError:
            return None
        for line in data.decode("utf-8", "replace").splitlines():
            parts = line.split(":")
            if len(parts) >= 3 and parts[0] == name and parts[2].isdigit():
                return int(parts[2])
        return None

    def _history(self, view: ImageView, cfg: Mapping[str, Any], res: AnalysisResult) -> None:
        history = cfg.get("history") or []
        if not isinstance(history, list):
            self._warn(res, "history is not a list")
            return
        layers = list(view.layers)
        layer_i = 0
        for i, h in enumerate(history):
            h = _obj(h)
            layer = None
            if not h.get("empty_layer"):
                layer = layers[layer_i] if layer_i < len(layers) else None
                layer_i += 1
            created_by = h.get("created_by")
            if not isinstance(created_by, str):
                continue
            m = _REMOTE_ADD.search(created_by)
            if m:
                pinned = "--checksum" in (m.group(1) or "")
                self._finding(
                    res, "config/remote-add", Severity.LOW if pinned else Severity.MEDIUM,
                    "ADD of a remote URL" + (" (checksum pinned)" if pinned else ""),
                    f"history[{i}]", m.group(2), layer,
                    "Remote content was fetched at build time; download it in a RUN step "
                    "with a verified checksum, or use ADD --checksum.")

    def _ports(self, inner: Mapping[str, Any], res: AnalysisResult) -> None:
        ports = inner.get("ExposedPorts") or {}
        if not isinstance(ports, Mapping):
            self._warn(res, "config.ExposedPorts is not an object")
            return
        for key in ports:
            port, _, proto = str(key).partition("/")
            if port.strip() == "22" and proto.lower() in ("", "tcp"):
                self._finding(res, "config/ssh-port", Severity.MEDIUM, "SSH port 22 exposed",
                              f"config.ExposedPorts.{key}", str(key),
                              description="Containers should not run an SSH server; use "
                                          "the runtime's exec instead.")

    def _healthcheck(self, inner: Mapping[str, Any], res: AnalysisResult) -> None:
        hc = _obj(inner.get("Healthcheck"))
        test = hc.get("Test")
        if not test or (isinstance(test, list) and test[:1] == ["NONE"]):
            self._finding(res, "config/no-healthcheck", Severity.INFO, "No HEALTHCHECK",
                          "config.Healthcheck", "Healthcheck absent" if not hc else "NONE")

    def _age(self, cfg: Mapping[str, Any], res: AnalysisResult) -> None:
        created = cfg.get("created")
        if not created:
            return
        try:
            when = _parse_time(str(created))
        except ValueError as e:
            self._warn(res, f"created: {e}")
            return
        if when < _EPOCH_CUTOFF:
            return
        try:
            max_days = int(self.options.extra.get("max_age_days", 365))
        except (TypeError, ValueError):
            max_days = 365
        age = (datetime.now(UTC) - when).days
        if age > max_days:
            self._finding(res, "config/image-age", Severity.LOW,
                          f"Image is {age} days old (more than {max_days})", "created",
                          str(created), description="Rebuild on a current base image.")

    def _labels(self, inner: Mapping[str, Any], res: AnalysisResult) -> None:
        labels = inner.get("Labels") or {}
        if not isinstance(labels, Mapping):
            self._warn(res, "config.Labels is not an object")
            return
        for key, value in labels.items():
            value = str(value)
            if key in _ATOMIC_LABELS and _PRIV_MARKERS.search(value):
                self._finding(res, "config/privileged-label", Severity.MEDIUM,
                              f"Label {key} asks for a privileged run", f"config.Labels.{key}",
                              value[:300])
            elif key == "io.containers.capabilities" and value.strip():
                self._finding(res, "config/privileged-label", Severity.MEDIUM,
                              "Label io.containers.capabilities requests capabilities",
                              f"config.Labels.{key}", value[:300])
