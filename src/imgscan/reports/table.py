"""The terminal view: as wide as the terminal, safe against hostile image data.

Every cell goes through ``printable`` (no raw ANSI escapes or newlines from file names reach
the terminal) and is cut or wrapped to the width: the terminal's (``COLUMNS`` first, else
the terminal, else ``WIDTH``), so no line exceeds it whatever the image contains. A rule id
is never cut (it is what an ignore file names) and a location is wrapped, never cut, so the
title is what wraps to make room; ``--wide`` (``WriterOptions.wide``) cuts nothing at all.
"""

from __future__ import annotations

import shutil
import sys
import textwrap
from collections import defaultdict
from typing import Any, TextIO

from tabulate import tabulate

from imgscan.model import Finding, LayerRef, Package, Report
from imgscan.reports.common import (
    canonical,
    human_size,
    location_text,
    printable,
    severity_counts,
    short_digest,
)
from imgscan.reports.interface import Writer

WIDTH = 100  # when there is no terminal and no COLUMNS
MIN_WIDTH = 60
MAX_WARNINGS = 20
MAX_LINES = 3
MIN_TITLE = 20
_FMT = "simple"
_SEP = 2  # tabulate's "simple" format puts two spaces between columns


def cut(text: object, width: int, keep_end: bool = False) -> str:
    """``text`` made printable and at most ``width`` characters, with an ellipsis."""
    s = printable(text)
    if len(s) <= width:
        return s
    if width <= 1:
        return s[:width]
    return "…" + s[-(width - 1):] if keep_end else s[: width - 1] + "…"


def _wrap(text: object, width: int, lines: int = MAX_LINES) -> str:
    """Printable text wrapped to ``width`` (long words broken), at most ``lines`` lines."""
    out = textwrap.wrap(printable(text), width=width, break_long_words=True,
                        break_on_hyphens=False) or [""]
    if len(out) > lines:
        out = [*out[: lines - 1], cut(out[lines - 1] + " …", width)]
    return "\n".join(out)


def terminal_width() -> int:
    """``COLUMNS``, else the terminal's width, else ``WIDTH``; never under ``MIN_WIDTH``."""
    return max(MIN_WIDTH, shutil.get_terminal_size((WIDTH, 24)).columns)


def _table(rows: list[list[str]], headers: list[str], widths: list[int | None],
           width: int = WIDTH, wrap_cols: frozenset[int] = frozenset(),
           last_lines: int = MAX_LINES) -> str:
    """A table that fits ``width``. ``widths`` has one entry per column but the last: cut to
    that width (negative: cut from the left, for paths; None: never cut, as wide as its
    longest cell). Columns in ``wrap_cols`` wrap at their width instead of being cut. The
    last column takes the rest and wraps. tabulate's "simple" format pads headers by two,
    so a column is at least ``len(header) + 2`` wide."""
    natural = [max([len(printable(r[i])) for r in rows] + [0]) for i in range(len(widths))]
    real = [max(natural[i] if w is None else abs(w), len(h) + 2)
            for i, (w, h) in enumerate(zip(widths, headers, strict=False))]
    rest = max(width - sum(real) - _SEP * len(real), len(headers[-1]) + 2)

    def cell(i: int, text: str) -> str:
        w = widths[i]
        if w is None:
            return printable(text)
        if i in wrap_cols:
            return _wrap(text, abs(w), lines=sys.maxsize)
        return cut(text, abs(w), keep_end=w < 0)

    body = [[*(cell(i, c) for i, c in enumerate(r[:-1])), _wrap(r[-1], rest, last_lines)]
            for r in rows]
    return tabulate(body, headers=headers, tablefmt=_FMT, disable_numparse=True)


def _layer(layer: LayerRef | None, hidden_by: LayerRef | None = None) -> str:
    """``L1`` or ``L1-L2`` (in layer 1, deleted by layer 2: explained under the table)."""
    if layer is None:
        return ""
    return f"L{layer.index}" + (f"-L{hidden_by.index}" if hidden_by is not None else "")


def _summary(r: Report, width: int) -> str:
    img = r.image
    os_name = ""
    if r.os is not None:
        os_name = r.os.pretty_name or f"{r.os.id} {r.os.version_id}".strip()
    arch = img.architecture + (f"/{img.variant}" if img.variant else "")
    rows = [
        ["Image", img.name or "(unnamed)"],
        ["Digest", img.digest or "-"],
        ["ID", short_digest(img.id) or "-"],
        ["OS", os_name or "unknown"],
        ["Platform", f"{img.os}/{arch}" if img.os or arch else "-"],
        ["Layers", f"{len(r.layers)}" + (f" ({human_size(img.size)})" if img.size else "")],
        ["Created", img.created or "-"],
        ["User", img.user or "root (not set)"],
        ["Packages", str(len(r.packages))],
    ]
    if img.source == "dir":  # a directory has no config, layers or digest to show
        rows = [row for row in rows if row[0] in ("Image", "OS", "Packages")]
    return tabulate([[k, _wrap(v, width - 12, lines=2 * MAX_LINES)] for k, v in rows],
                    tablefmt="plain",
                    disable_numparse=True)


def _counts(r: Report) -> str:
    counts = severity_counts(r.findings)
    heads = [s.value.upper() for s in counts]
    return tabulate([[*map(str, counts.values()), str(len(r.findings))]],
                    headers=[*heads, "TOTAL"], tablefmt=_FMT, disable_numparse=True)


def _vulnerabilities(vulns: list[Finding], width: int) -> str:
    """--vulns findings: what a person fixes by upgrading (not-reachable Go ones say so)."""
    rows = []
    for f in vulns:
        p = f.properties or {}
        sev = f.severity.value.upper()
        if p.get("reachability") == "not-reachable":
            sev += " (not reachable)"
        rows.append([f.rule_id, p.get("name", ""), p.get("installed_version", ""),
                     p.get("fixed_version", "") or "-", sev])
    return _table(rows, ["ID", "Package", "Installed", "Fixed", "Severity"],
                  [None, 22, 16, 16], width, wrap_cols=frozenset({1}))


def _findings(r: Report, width: int) -> str:
    """Rule ids whole, locations whole (wrapped when they must be), titles wrap in the rest
    (at least ``MIN_TITLE`` columns)."""
    rows = [
        [f.severity.value.upper(), f.rule_id, location_text(f),
         _layer(f.location.layer, f.location.hidden_by), f.title]
        for f in r.findings if f.category != "vulnerability"
    ]
    fixed = 10 + 7 + _SEP * 4  # severity, layer, the gaps
    share = width - fixed
    rule = max([len(printable(row[1])) for row in rows] + [6])
    rule = min(rule, max(12, share - MIN_TITLE - 12))  # wraps only when narrow
    loc = max([len(printable(row[2])) for row in rows] + [10])
    loc = min(loc, max(12, share - rule - MIN_TITLE))
    text = _table(rows, ["Severity", "Rule", "Location", "Layer", "Title"],
                  [10, rule, loc, 7], width, wrap_cols=frozenset({1, 2}),
                  last_lines=sys.maxsize)
    if any(f.location.hidden_by is not None for f in r.findings):
        text += "\n" + "\n".join(textwrap.wrap(
            "Layer L1-L2: the file is in layer 1 and deleted by layer 2; it still ships "
            "in the image.", width))
    return text


def _packages(r: Report, width: int) -> str:
    by_type: dict[str, list[Package]] = defaultdict(list)
    for p in r.packages:
        by_type[p.type].append(p)
    parts = []
    for typ in sorted(by_type):
        pkgs = by_type[typ]
        rows = [[p.name, p.version, p.arch, p.source_name if p.source_name != p.name else "",
                 _layer(p.layer), ", ".join(p.licenses)] for p in pkgs]
        parts.append(f"{cut(typ, 40)} ({len(pkgs)})\n" + _table(
            rows, ["Name", "Version", "Arch", "Source", "Layer", "Licenses"],
            [24, 20, 7, 12, 7], width))
    return "\n\n".join(parts)


_ELF_ORDER = ("path", "relro", "canary", "nx", "pie", "fortify", "rpath", "runpath",
              "stripped")


def _cell(v: object) -> str:
    if v is True:
        return "yes"
    if v is False:
        return "no"
    return "" if v is None else str(v)


def _elf(rows: list[dict[str, Any]], width: int) -> str:
    """One row per binary. Known columns first; at most 9 fit in 100 columns (the JSON has
    them all)."""
    keys: list[str] = [k for k in _ELF_ORDER if any(k in row for row in rows)]
    for row in rows:
        keys += [str(k) for k in row if str(k) not in keys]
    keys = keys[:9]
    order = (["path"] if "path" in keys else []) + [k for k in keys if k != "path"]
    ncols = max(1, len(order) - 1)
    col = max(6, (min(width, WIDTH) - 34 - _SEP * ncols) // ncols)
    widths: list[int | None] = [-32 if k == "path" else col for k in order[:-1]]
    body = [[_cell(row.get(k)) for k in order]
            for row in sorted(rows, key=lambda x: str(x.get("path", "")))]
    return _table(body, [cut(k.upper(), col) for k in order], widths, width)


def _warnings(r: Report, width: int) -> str:
    rows = [[w.analyzer, w.path, w.message] for w in r.warnings[:MAX_WARNINGS]]
    text = _table(rows, ["Analyzer", "Path", "Message"], [12, -40], width)
    if len(r.warnings) > MAX_WARNINGS:
        text += f"\n… and {len(r.warnings) - MAX_WARNINGS} more warnings (see the JSON report)"
    return text


def render_table(report: Report, packages: bool = False, elf: bool = False,
                 width: int | None = None, wide: bool = False) -> str:
    """The whole terminal report; packages and ELF rows only when asked for. ``width``
    defaults to the terminal's; ``wide`` cuts and wraps nothing."""
    r = canonical(report)
    w = sys.maxsize // 4 if wide else (width or terminal_width())
    sections = [_summary(r, w), "Findings by severity\n" + _counts(r)]
    vulns = [f for f in r.findings if f.category == "vulnerability"]
    if vulns:
        sections.append(f"Vulnerabilities ({len(vulns)})\n" + _vulnerabilities(vulns, w))
    if len(vulns) < len(r.findings):
        sections.append("Findings\n" + _findings(r, w))
    elif not r.findings:
        sections.append("No findings.")
    if packages:
        sections.append("Packages\n" + (_packages(r, w) if r.packages else "none found"))
    if elf and r.facts.get("elf"):
        sections.append("ELF hardening\n" + _elf(r.facts["elf"], w))
    if r.warnings:
        sections.append(f"Warnings ({len(r.warnings)})\n" + _warnings(r, w))
    return "\n\n".join(sections) + "\n"


class TableWriter(Writer):
    format_name = "table"
    extension = ".txt"

    def write(self, report: Report, out: TextIO) -> None:
        out.write(render_table(report, packages=self.options.packages, elf=self.options.elf,
                               width=self.options.width, wide=self.options.wide))
