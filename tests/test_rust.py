"""cargo-auditable cataloger on real ELF binaries (gcc) given a `.dep-v0` section by objcopy.

The expected crates are the JSON the test itself compresses into the section; a binary
without the section must yield nothing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import zlib
from pathlib import Path

import pytest

from analyzerharness import LocalFileInput, info_from_stat, run_analyzer
from imgscan.analyzers.rust import RustAuditableAnalyzer

AUDIT = {
    "format": 1,
    "packages": [
        {"name": "hello", "version": "0.1.0", "source": "local", "root": True,
         "dependencies": [1, 2]},
        {"name": "serde", "version": "1.0.197", "source": "crates.io", "dependencies": [2]},
        {"name": "libc", "version": "0.2.153", "source": "crates.io"},
        {"name": "cc", "version": "1.0.90", "source": "crates.io", "kind": "build"},
        {"name": "mygit", "version": "0.0.1-alpha.1+meta", "source": "git"},
    ],
}


@pytest.fixture(scope="session")
def c_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    for tool in ("gcc", "objcopy"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed (apt-get install gcc binutils)")
    d = tmp_path_factory.mktemp("rust")
    (d / "t.c").write_text("int main(void) { return 0; }\n")
    subprocess.run(["gcc", "-O1", "-o", str(d / "plain"), str(d / "t.c")], check=True)
    return d / "plain"


def _with_section(c_binary: Path, dest: Path, payload: bytes) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    sec = dest.parent / (dest.name + ".sec")
    sec.write_bytes(payload)
    subprocess.run(["objcopy", "--add-section", f".dep-v0={sec}", str(c_binary), str(dest)],
                   check=True)
    sec.unlink()
    return dest


def test_crates_from_section(tmp_path: Path, c_binary: Path) -> None:
    root = tmp_path / "root"
    (root / "usr/bin").mkdir(parents=True)
    _with_section(c_binary, root / "usr/bin/audited", zlib.compress(json.dumps(AUDIT).encode()))
    shutil.copy(c_binary, root / "usr/bin/plain")
    out = subprocess.run(["readelf", "-S", str(root / "usr/bin/audited")],
                         capture_output=True, text=True).stdout
    assert ".dep-v0" in out  # objcopy really made an ELF section
    result = run_analyzer(RustAuditableAnalyzer(), str(root))
    assert not result.warnings
    got = {(p.name, p.version, p.metadata["source"], p.metadata["kind"]) for p in result.packages}
    want = {(p["name"], p["version"], p["source"], p.get("kind", "runtime"))
            for p in AUDIT["packages"]}
    assert got == want
    assert all(p.locations == ("/usr/bin/audited",) and p.type == "cargo"
               for p in result.packages)
    assert [p.name for p in result.packages if p.metadata.get("root")] == ["hello"]


def _analyze(path: Path, rel: str):
    an = RustAuditableAnalyzer()
    info = info_from_stat(rel, path.stat())
    assert an.required(info)
    return an.analyze(LocalFileInput(str(path), info))


@pytest.mark.parametrize(
    "payload,needle",
    [
        (b"not zlib at all", "zlib"),
        (zlib.compress(b"\xff\xfe not utf8"), "UTF-8"),
        (zlib.compress(b"[1, 2, 3]"), "packages"),
        (zlib.compress(b"{" * 50), "JSON"),
        # 9 MiB of spaces inflating from a few KiB: refused at the 8 MiB cap
        (zlib.compress(b'{"packages": []}' + b" " * (9 << 20), 9), "inflates"),
    ],
    ids=["not-zlib", "not-utf8", "no-packages", "bad-json", "bomb"],
)
def test_bad_sections(tmp_path: Path, c_binary: Path, payload: bytes, needle: str) -> None:
    b = _with_section(c_binary, tmp_path / "bin/x", payload)
    res = _analyze(b, "bin/x")
    assert res is not None and not res.packages
    assert len(res.warnings) == 1 and needle in res.warnings[0].message


def test_invalid_graph_warns_but_lists(tmp_path: Path, c_binary: Path) -> None:
    doc = {"packages": [{"name": "a", "version": "1.0.0", "source": "crates.io",
                         "dependencies": [7]}, {"version": "1"}, "junk"]}
    b = _with_section(c_binary, tmp_path / "bin/x", zlib.compress(json.dumps(doc).encode()))
    res = _analyze(b, "bin/x")
    assert [(p.name, p.version) for p in res.packages] == [("a", "1.0.0")]
    msgs = " | ".join(w.message for w in res.warnings)
    assert "dependency indices" in msgs and "root" in msgs and "not an object" in msgs


def test_no_section_and_truncated(tmp_path: Path, c_binary: Path) -> None:
    assert _analyze(c_binary, "bin/plain") is None
    data = c_binary.read_bytes()
    for cut in (64, 200, len(data) // 2, len(data) - 10):
        p = tmp_path / "bin" / f"cut{cut}"
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(data[:cut])
        p.chmod(0o755)
        assert _analyze(p, f"bin/cut{cut}") is None
    # the section itself cut off by truncation -> a warning
    b = _with_section(c_binary, tmp_path / "bin/x", zlib.compress(json.dumps(AUDIT).encode()))
    raw = b.read_bytes()
    at = raw.find(zlib.compress(json.dumps(AUDIT).encode())[:8])
    assert at > 0
    # keep the header tables (objcopy puts them at the end) but zero the section's bytes
    p = tmp_path / "bin/zeroed"
    p.write_bytes(raw[:at] + b"\0" * 40 + raw[at + 40:])
    p.chmod(0o755)
    res = _analyze(p, "bin/zeroed")
    assert res is not None and res.warnings and not res.packages
