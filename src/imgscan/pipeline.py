"""From reports to verdicts and files: gate and write one report, audit a whole store, and
``atomic scan``'s scanner mode.

These used to live in the command line; they are library functions so that a Python user can
run an audit or the atomic mode and get the same files and exit codes as ``imgscan scan``.
Nothing here prints a verdict: results come back as values (``AuditResult``, ``GateOutcome``)
and the caller renders them. Writers and the scanner are imported on first use, so importing
this module (through ``imgscan.api``) costs little.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from imgscan.errors import ImgscanError, UsageError
from imgscan.gate import EXIT_ERROR, EXIT_GATE_FAILED, GateConfig, GateOutcome
from imgscan.model import Report
from imgscan.reports.interface import (
    OutputSpec,
    WriterOptions,
    get_writer,
    plan_outputs,
    write_file,
    writer_class,
)

if TYPE_CHECKING:
    from imgscan.analyzers.interface import ScanOptions
    from imgscan.store.store import Store

__all__ = [
    "AuditEntry",
    "AuditResult",
    "OutputSpec",
    "WriterOptions",
    "audit",
    "gate_and_write",
    "plan_outputs",
    "scan_atomic",
]


def gate_and_write(report: Report, gate: GateConfig, outputs: Sequence[OutputSpec],
                   options: WriterOptions | None = None,
                   stdout: TextIO | None = None) -> GateOutcome:
    """Judge ``report`` (ignore file, baseline, policy, threshold) and write the judged report
    to every output (``path=None``: ``stdout``). Returns the outcome; its ``exit_code`` is the
    gate's. Writing what the gate saw, not the raw scan, is what keeps the files and the exit
    code consistent: an ignored finding is in neither."""
    outcome = gate.run(report)
    stream = stdout or sys.stdout
    for spec in outputs:
        text = None
        if spec.format == "json":  # a warm hit's JSON comes mostly from the report cache
            from imgscan import jsonhead

            text = jsonhead.json_text(report, outcome.report, gate, options)
        if spec.path is None:
            if text is None:
                get_writer(spec.format, options).write(outcome.report, stream)
            else:
                stream.write(text)
            stream.flush()
        else:
            write_file(outcome.report, spec.format, spec.path, options, text=text)
    return outcome


@dataclass(frozen=True)
class AuditEntry:
    """One image (or rootfs) of an audit: what was found and what the gate said.

    ``error`` is set (and ``exit_code`` is 3) when the image could not be scanned; then
    ``packages`` is None and no report was written for it."""

    label: str
    short_id: str
    exit_code: int
    packages: int | None = None
    #: findings of the scan (before the gate) by severity, critical first, zeros included
    counts: Mapping[str, int] = field(default_factory=dict)
    verdict: str = ""  # the gate's one-line summary
    error: str = ""
    files: tuple[Path, ...] = ()

    @property
    def failed_gate(self) -> bool:
        return self.exit_code == EXIT_GATE_FAILED


@dataclass(frozen=True)
class AuditResult:
    """Every entry in scan order, where the reports went, and the worst exit code."""

    entries: tuple[AuditEntry, ...]
    output_dir: Path

    @property
    def exit_code(self) -> int:
        return max((e.exit_code for e in self.entries), default=0)


def safe_name(text: str) -> str:
    """A file name from an image name: ``localhost/app:1.0`` → ``localhost_app_1.0``."""
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in text)[:120] or "image"


def audit(store: Store | None = None, *, root: str | None = None,
          formats: Sequence[str] = ("json",), output_dir: str | Path = ".",
          gate: GateConfig | None = None,
          analyzers: Sequence[str] | None = None, options: ScanOptions | None = None,
          jobs: int | None = None, writer_options: WriterOptions | None = None) -> AuditResult:
    """Scan every image of the store (``imgscan scan --all``): each one is gated and written
    as ``<output_dir>/<name>.<writer extension>`` in every format. An image that cannot be
    read is an entry with an error (exit 3), and the audit goes on with the next."""
    from imgscan.analyzers.interface import AnalyzerError
    from imgscan.progress import Progress
    from imgscan.reports.common import severity_counts
    from imgscan.scanner import Scanner
    from imgscan.store.leases import leased
    from imgscan.store.store import Store

    gate = gate or GateConfig()
    bad = [f for f in formats if "=" in f]
    if bad:
        raise UsageError(f"an audit names its own files: give formats without =FILE ({bad[0]})")
    extensions = {f: writer_class(f).extension for f in formats}  # unknown format: exit 2 now
    out_dir = Path(output_dir)
    os.makedirs(out_dir, exist_ok=True)
    store = store or Store(root)
    entries: list[AuditEntry] = []
    images = store.images()
    with Progress("auditing", len(images)) as bar:
        for img in images:
            label = img.names[0] if img.names else img.short_id
            try:
                with leased(store, img.id) as img:
                    report = Scanner(analyzers, options, jobs=jobs).scan_image(store, img)
            except AnalyzerError:
                raise  # a broken plugin breaks every image alike: stop and say so
            except ImgscanError as e:
                entries.append(AuditEntry(label, img.short_id, EXIT_ERROR, error=str(e)))
                bar.advance(label)
                continue
            base = out_dir / safe_name(label)
            specs = [f"{f}={base}{extensions[f]}" for f in formats]
            outputs = plan_outputs(specs, None)
            outcome = gate_and_write(report, gate, outputs, writer_options)
            counts = {s.value: n for s, n in severity_counts(report.findings).items()}
            entries.append(AuditEntry(
                label, img.short_id, outcome.exit_code, packages=len(report.packages),
                counts=counts, verdict=outcome.gate.summary(),
                files=tuple(o.path for o in outputs if o.path is not None)))
            bar.advance(label)
    return AuditResult(tuple(entries), out_dir)


def scan_atomic(scanin: str | Path, scanout: str | Path, *, gate: GateConfig | None = None,
                analyzers: Sequence[str] | None = None, options: ScanOptions | None = None,
                jobs: int | None = None,
                writer_options: WriterOptions | None = None) -> AuditResult:
    """``atomic scan``'s scanner mode: every directory ``<scanin>/<id>`` is a mounted rootfs;
    its result goes to ``<scanout>/<id>/json`` in the atomic format. A rootfs that cannot be
    scanned gets a failure document there (so atomic reports it) and exit code 3."""
    from imgscan.analyzers.interface import AnalyzerError
    from imgscan.reports.atomic import failure_document
    from imgscan.scanner import Scanner

    gate = gate or GateConfig()
    entries: list[AuditEntry] = []
    for name in sorted(os.listdir(scanin)):
        target = os.path.join(scanin, name)
        if not os.path.isdir(target):
            continue
        dest = Path(scanout) / name
        os.makedirs(dest, exist_ok=True)
        try:
            report = Scanner(analyzers, options, jobs=jobs).scan_dir(target)
        except AnalyzerError:
            raise
        except ImgscanError as e:
            with open(dest / "json", "w") as f:
                json.dump(failure_document(f"/scanin/{name}", str(e)), f, indent=2)
            entries.append(AuditEntry(name, name, EXIT_ERROR, error=str(e),
                                      files=(dest / "json",)))
            continue
        report.image = dataclasses.replace(report.image, name=name)
        outcome = gate_and_write(report, gate, [OutputSpec("atomic", dest / "json")],
                                 writer_options)
        entries.append(AuditEntry(name, name, outcome.exit_code, packages=len(report.packages),
                                  verdict=outcome.gate.summary(), files=(dest / "json",)))
    return AuditResult(tuple(entries), Path(scanout))
