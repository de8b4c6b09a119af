"""The HTML report: well-formed, self-contained, rendered for real by headless Chromium."""

from __future__ import annotations

import html.parser
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from imgscan.reports.interface import render, write_file
from test_reports_fixture import IMAGE_NAME, hostile_report, make_report

VOID = {"meta", "br", "img", "input", "link", "hr", "wbr", "col", "source", "area", "base"}


class _Checker(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.refs: list[tuple[str, str, str]] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.tags.append(tag)
        for k, v in attrs:
            if k in ("src", "href", "xlink:href", "action", "srcset", "poster", "data"):
                self.refs.append((tag, k, v or ""))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs) -> None:
        self.tags.append(tag)

    def handle_endtag(self, tag) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


def _check(text: str) -> _Checker:
    c = _Checker()
    c.feed(text)
    c.close()
    return c


@pytest.mark.parametrize("build", [make_report, hostile_report])
def test_well_formed_and_self_contained(build) -> None:
    text = render(build(), "html")
    c = _check(text)
    assert c.errors == [] and c.stack == []
    assert c.refs == []  # no src/href at all: nothing external, nothing to fetch
    assert "link" not in c.tags and c.tags.count("script") == 1
    assert "@import" not in text and "url(" not in text
    assert "<svg" in text and "Content-Security-Policy" in text


def test_hostile_data_is_escaped() -> None:
    text = render(hostile_report(), "html")
    assert "<script>alert" not in text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in text
    assert "\x1b" not in text


def test_sections_present() -> None:
    r = make_report()
    text = render(r, "html")
    for f in r.findings:
        assert f.id in text
    for p in r.packages:
        assert p.purl.replace("&", "&amp;") in text
    for layer in r.layers:
        assert layer.diff_id in text
    assert "removed by L2" in text
    assert "Findings by severity" in text and "Packages by type" in text
    assert "ELF hardening" in text and "$ORIGIN/../lib" in text


# --- real rendering ----------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _chromium(args: list[str], page: Path, tmp: Path,
              fragment: str = "") -> subprocess.CompletedProcess[str]:
    assert CHROMIUM, "chromium is required (apt-get install chromium)"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
           "--disable-background-networking", "--disable-component-update", "--no-first-run",
           f"--user-data-dir={tmp / 'profile'}", *args, page.as_uri() + fragment]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True)


def _png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Decode an 8-bit RGB/RGBA PNG (what Chromium writes) into unfiltered rows."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    height = depth = ctype = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, ctype = struct.unpack(">IIBB", body[:10])
        elif kind == b"IDAT":
            idat += body
    assert depth == 8 and ctype in (2, 6), (depth, ctype)
    bpp = 3 if ctype == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 0xFF
            elif f == 2:
                line[i] = (line[i] + b) & 0xFF
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 0xFF
        rows.append(bytes(line))
        prev = line
    return width, bpp, rows


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict[str, object]:
    tmp = tmp_path_factory.mktemp("html")
    page = tmp / "report.html"
    write_file(make_report(), "html", page)
    shot = tmp / "shot.png"
    _chromium(["--window-size=1200,900", f"--screenshot={shot}"], page, tmp)
    dom = _chromium(["--enable-logging=stderr", "--v=0", "--dump-dom"], page, tmp)
    return {"png": shot.read_bytes(), "dom": dom.stdout, "log": dom.stderr, "tmp": tmp}


def test_screenshot_is_not_blank(rendered) -> None:
    width, bpp, rows = _png_pixels(rendered["png"])  # type: ignore[arg-type]
    assert len(rows) == 900 and width == 1200
    colors: set[bytes] = set()
    dark = 0
    for row in rows[::4]:
        for x in range(0, width * bpp, bpp * 4):
            px = row[x:x + 3]
            colors.add(px)
            dark += sum(px) < 3 * 128
    assert len(colors) > 20  # text, badges and chart bars, not one flat colour
    assert dark > 200


def test_dom_shows_the_image_name_and_the_script_ran_under_csp(rendered) -> None:
    dom = str(rendered["dom"])
    assert f'<h1 id="image-name">{IMAGE_NAME}</h1>' in dom
    assert "<svg" in dom and 'id="findings"' in dom
    assert "Content Security Policy" not in str(rendered["log"])
    assert "Uncaught" not in str(rendered["log"])


def test_tables_sort_in_the_browser(rendered) -> None:
    """``#sort=packages:1:desc`` clicks the Name header twice: names in descending order."""
    tmp = rendered["tmp"]
    assert isinstance(tmp, Path)
    page = tmp / "report.html"
    dom = _chromium(["--dump-dom"], page, tmp, fragment="#sort=packages:1:desc").stdout
    body = dom[dom.index('<table id="packages"'):]
    body = body[:body.index("</table>")]
    names = re.findall(r"<tr><td>[a-z]+</td><td>([^<]+)</td>", body)
    expected = sorted((p.name for p in make_report().packages), reverse=True,
                      key=str.lower)  # localeCompare: case-insensitive, "@" first
    assert names == expected


def test_csp_blocks_a_script_that_is_not_ours(rendered) -> None:
    """The check above can fail: a changed script body is refused by the page's own CSP."""
    tmp = rendered["tmp"]
    assert isinstance(tmp, Path)
    page = tmp / "tampered.html"
    page.write_text(render(make_report(), "html").replace(
        "document.querySelectorAll", "document.querySelectorAll ", 1))
    log = _chromium(["--enable-logging=stderr", "--v=0", "--dump-dom"], page, tmp).stderr
    assert "violates the following Content Security Policy directive" in log
