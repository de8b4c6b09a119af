"""One self-contained HTML page: no external scripts, fonts, styles or images.

Everything taken from the image is escaped with ``html.escape`` (image data is hostile), and
a Content-Security-Policy allows only this page's own inline style and the one inline script,
pinned by its hash, so even a missed escape could not run injected script. Charts are inline
SVG built here; tables sort with a few lines of JavaScript (click a header, or open the page
as ``report.html#sort=<table id>:<column>[:desc]``, e.g. ``#sort=packages:1``).
"""

from __future__ import annotations

import base64
import hashlib
from collections import Counter, defaultdict
from html import escape
from typing import TextIO
from urllib.parse import quote

from imgscan.model import Finding, Report
from imgscan.reports.common import (
    canonical,
    human_size,
    layer_label,
    location_text,
    printable,
    severity_counts,
)
from imgscan.reports.interface import Writer

SEVERITY_COLORS = {"critical": "#8b0000", "high": "#d9480f", "medium": "#e8a200",
                   "low": "#1c7ed6", "info": "#868e96"}
_PALETTE = ("#364fc7", "#2b8a3e", "#c2255c", "#e67700", "#5f3dc4", "#0b7285", "#495057")

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#212529;
background:#fff}
h1{font-size:1.5em;margin:0 0 .3em;word-break:break-all}h2{margin-top:1.6em;font-size:1.2em}
table{border-collapse:collapse;width:100%;font-size:.9em;margin:.5em 0}
th,td{border:1px solid #dee2e6;padding:4px 6px;text-align:left;vertical-align:top;
word-break:break-word}
th{background:#f1f3f5}th.sortable{cursor:pointer}th.sortable:after{content:" \\2195";color:#999}
table.kv th{width:12em}code{font-size:.95em}
.sev{color:#fff;border-radius:3px;padding:1px 6px;font-weight:600;font-size:.85em;
white-space:nowrap}
.charts{display:flex;flex-wrap:wrap;gap:24px}.chart{flex:1 1 420px}
.muted{color:#6c757d}.hidden-by{color:#8b0000;font-weight:600}
"""

_JS = """
document.querySelectorAll("table.sortable-table").forEach(function(t){
 t.querySelectorAll("th.sortable").forEach(function(th,i){
  th.addEventListener("click",function(){
   var b=t.tBodies[0],rows=Array.prototype.slice.call(b.rows),asc=th.dataset.dir!=="asc";
   t.querySelectorAll("th").forEach(function(h){delete h.dataset.dir});
   th.dataset.dir=asc?"asc":"desc";
   rows.sort(function(x,y){
    var a=x.cells[i].dataset.sort||x.cells[i].textContent,
        c=y.cells[i].dataset.sort||y.cells[i].textContent,
        n=parseFloat(a),m=parseFloat(c);
    var r=(!isNaN(n)&&!isNaN(m))?n-m:a.localeCompare(c);
    return asc?r:-r});
   rows.forEach(function(r){b.appendChild(r)});
  })})});
function vfilter(){
 var q=document.getElementById("vfilter").value.toLowerCase(),
     fx=document.getElementById("vfixed").checked;
 document.querySelectorAll("#vulnerabilities tbody tr").forEach(function(r){
  var ok=r.textContent.toLowerCase().indexOf(q)>=0&&(!fx||r.dataset.fixed==="1");
  r.style.display=ok?"":"none"})}
document.querySelectorAll("input.vfilter,input.vfixed").forEach(function(el){
 el.addEventListener("input",vfilter);el.addEventListener("change",vfilter)});
var m=/^#sort=([a-z]+):([0-9]+)(:desc)?$/.exec(location.hash);
if(m){var t=document.getElementById(m[1]);
 if(t){var h=t.querySelectorAll("th.sortable")[+m[2]];
  if(h){h.click();if(m[3])h.click();}}}
"""


def _e(value: object) -> str:
    """Escaped for text and attribute values; control characters shown as escapes."""
    return escape(printable(value), quote=True)


def csp() -> str:
    """The page's Content-Security-Policy: nothing external, only our own script."""
    digest = base64.b64encode(hashlib.sha256(_JS.encode()).digest()).decode()
    return (f"default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
            f"script-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'")


def bar_chart(title: str, items: list[tuple[str, int, str]], width: int = 460) -> str:
    """A horizontal bar chart as inline SVG; labels and values are escaped."""
    bar_h, gap, label_w = 22, 8, 120
    height = max(1, len(items)) * (bar_h + gap) + 30
    top = max([n for _, n, _ in items] + [1])
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}">',
             f"<title>{_e(title)}</title>",
             f'<text x="0" y="16" font-size="14" font-weight="600">{_e(title)}</text>']
    for i, (label, n, color) in enumerate(items):
        y = 28 + i * (bar_h + gap)
        w = int((width - label_w - 60) * n / top)
        parts.append(f'<text x="0" y="{y + 15}" font-size="13">{_e(label)}</text>')
        parts.append(f'<rect x="{label_w}" y="{y}" width="{max(w, 1 if n else 0)}" '
                     f'height="{bar_h}" fill="{_e(color)}"><title>{_e(label)}: {n}</title>'
                     f"</rect>")
        parts.append(f'<text x="{label_w + w + 6}" y="{y + 15}" font-size="13">{n}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _sev_badge(sev: str) -> str:
    return (f'<span class="sev" style="background:{SEVERITY_COLORS.get(sev, "#495057")}">'
            f"{_e(sev.upper())}</span>")


def _kv_table(rows: list[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    return f'<table class="kv"><tbody>{body}</tbody></table>'


def _sortable(headers: list[str], rows: list[list[str]], table_id: str) -> str:
    """``rows`` hold already-escaped cell HTML (``<td …>…</td>``)."""
    head = "".join(f'<th class="sortable" scope="col">{_e(h)}</th>' for h in headers)
    body = "".join("<tr>" + "".join(r) + "</tr>" for r in rows)
    return (f'<table id="{table_id}" class="sortable-table"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table>")


def _td(text: object, sort: object | None = None) -> str:
    attr = f' data-sort="{_e(sort)}"' if sort is not None else ""
    return f"<td{attr}>{_e(text)}</td>"


def _vulnerabilities(vulns: list[Finding]) -> str:
    """--vulns findings with a text filter and a "has a fix" switch (the page's own script;
    rows carry ``data-fixed``), since an image can have hundreds of them."""
    if not vulns:
        return ""
    rows = []
    for f in vulns:
        p = f.properties or {}
        fixed = str(p.get("fixed_version", ""))
        reach = "not reachable: " + str(p.get("reachability_reason", "")) \
            if p.get("reachability") == "not-reachable" else ""
        ids = ", ".join([*p.get("ids", ()), *p.get("aliases", ())])
        rows.append(
            f'<tr data-fixed="{1 if fixed else 0}">'
            f'<td data-sort="{f.severity.rank}">{_sev_badge(f.severity.value)}</td>'
            f'<td><a href="https://osv.dev/vulnerability/{_e(quote(f.rule_id, safe=""))}">'
            f"{_e(f.rule_id)}</a></td>" + _td(p.get("name", "")) +
            _td(p.get("installed_version", "")) + _td(fixed or "-") + _td(ids) +
            _td(f.description) + _td(reach) + "</tr>")
    head = "".join(f'<th class="sortable" scope="col">{h}</th>' for h in
                   ("Severity", "ID", "Package", "Installed", "Fixed", "Also known as",
                    "Summary", "Reachability"))
    return (f"<h2>Vulnerabilities ({len(vulns)})</h2>"
            '<p><input id="vfilter" class="vfilter" type="search" placeholder="filter" '
            'aria-label="filter vulnerabilities"> <label><input id="vfixed" class="vfixed" '
            'type="checkbox"> only with a fix</label></p>'
            f'<table id="vulnerabilities" class="sortable-table"><thead><tr>{head}</tr>'
            f'</thead><tbody>{"".join(rows)}</tbody></table>')


def render_html(report: Report) -> str:
    r = canonical(report)
    img = r.image
    os_name = ""
    if r.os is not None:
        os_name = r.os.pretty_name or f"{r.os.id} {r.os.version_id}".strip()
    counts = severity_counts(r.findings)
    by_type = Counter(p.type for p in r.packages)
    pkgs_by_layer: dict[int, int] = defaultdict(int)
    for p in r.packages:
        if p.layer is not None:
            pkgs_by_layer[p.layer.index] += 1

    summary = _kv_table([
        ("Image", img.name or "(unnamed)"), ("Digest", img.digest or "-"),
        ("ID", img.id or "-"), ("OS", os_name or "unknown"),
        ("Platform", "/".join(x for x in (img.os, img.architecture, img.variant) if x) or "-"),
        ("Created", img.created or "-"), ("User", img.user or "root (not set)"),
        ("Size", human_size(img.size) if img.size else "-"), ("Layers", str(len(r.layers))),
        ("Packages", str(len(r.packages))), ("Findings", str(len(r.findings))),
        ("Warnings", str(len(r.warnings))), ("Scanned", r.created or "-"),
        ("Scanner", f"{r.tool.get('name', 'imgscan')} {r.tool.get('version', '')}".strip()),
    ])
    sev_chart = bar_chart("Findings by severity",
                          [(s.value, n, SEVERITY_COLORS[s.value]) for s, n in counts.items()])
    type_chart = bar_chart("Packages by type",
                           [(t, n, _PALETTE[i % len(_PALETTE)])
                            for i, (t, n) in enumerate(sorted(by_type.items()))])

    finding_rows = []
    for f in r.findings:
        loc = f.location
        layer = layer_label(loc.layer)
        if loc.hidden_by is not None:
            layer_cell = (f'<td data-sort="{loc.layer.index if loc.layer else ""}">{_e(layer)} '
                          f'<span class="hidden-by">removed by L{loc.hidden_by.index}'
                          f"</span></td>")
        else:
            layer_cell = _td(layer, loc.layer.index if loc.layer else "")
        finding_rows.append([
            f'<td data-sort="{f.severity.rank}">{_sev_badge(f.severity.value)}</td>',
            _td(f.category), _td(f.rule_id), _td(f.title),
            f"<td><code>{_e(location_text(f))}</code></td>", layer_cell,
            _td(f.evidence), _td(f.id),
        ])
    findings = (_sortable(["Severity", "Category", "Rule", "Title", "Location", "Layer",
                           "Evidence", "ID"], finding_rows, "findings")
                if finding_rows else "<p>No findings.</p>")

    vulns = _vulnerabilities([f for f in r.findings if f.category == "vulnerability"])

    package_rows = [[_td(p.type), _td(p.name), _td(p.version), _td(p.arch),
                     _td(p.source_name), _td(", ".join(p.licenses)),
                     _td(layer_label(p.layer), p.layer.index if p.layer else ""),
                     _td(p.purl), f"<td><code>{_e(', '.join(p.locations))}</code></td>"]
                    for p in r.packages]
    packages = (_sortable(["Type", "Name", "Version", "Arch", "Source", "Licenses", "Layer",
                           "purl", "Found in"], package_rows, "packages")
                if package_rows else "<p>No packages found.</p>")

    layer_rows = [[_td(f"L{ly.index}", ly.index), _td(human_size(ly.size), ly.size),
                   _td(ly.packages_added or pkgs_by_layer.get(ly.index, 0)),
                   _td(ly.entries), f"<td><code>{_e(ly.created_by)}</code></td>",
                   _td(ly.diff_id)] for ly in r.layers]
    layers = (_sortable(["Layer", "Size", "Packages added", "Entries", "Created by",
                         "diff_id"], layer_rows, "layers")
              if layer_rows else "<p>No layers (a directory scan).</p>")

    extra = ""
    elf_rows = r.facts.get("elf") or []
    if elf_rows:
        keys: list[str] = []
        for row in elf_rows:
            keys += [str(k) for k in row if str(k) not in keys]
        rows = [[_td(row.get(k, "")) for k in keys] for row in elf_rows]
        extra += "<h2>ELF hardening</h2>" + _sortable(keys, rows, "elf")
    if r.warnings:
        items = "".join(f"<li><code>{_e(w.path)}</code> {_e(w.analyzer)}: {_e(w.message)}</li>"
                        for w in r.warnings)
        extra += f"<h2>Warnings ({len(r.warnings)})</h2><ul>{items}</ul>"

    title = f"imgscan report: {img.name or img.id or 'image'}"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_e(csp())}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        f'<h1 id="image-name">{_e(img.name or img.id or "image")}</h1>'
        f'<p class="muted">imgscan report, schema {_e(r.schema_version)}</p>'
        f"<h2>Image</h2>{summary}"
        f'<div class="charts"><div class="chart">{sev_chart}</div>'
        f'<div class="chart">{type_chart}</div></div>'
        f"{vulns}"
        f"<h2>Findings ({len(r.findings)})</h2>{findings}"
        f"<h2>Layers ({len(r.layers)})</h2>{layers}"
        f"<h2>Packages ({len(r.packages)})</h2>{packages}"
        f"{extra}"
        f"<script>{_JS}</script></body></html>\n"
    )


class HtmlWriter(Writer):
    format_name = "html"
    extension = ".html"

    def write(self, report: Report, out: TextIO) -> None:
        out.write(render_html(report))
