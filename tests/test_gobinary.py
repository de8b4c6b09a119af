"""Go binary cataloger against `go version -m` on binaries built here with `go build`.

Dependencies come from a local file:// module proxy written by the test (GOPROXY=file://...,
no network), so the binaries carry real `dep` lines with h1 sums and a real `=>` replacement
by another module version, plus a replacement by a local directory. The pre-1.18 pointer
layout cannot be built with Go 1.19, so `_old_layout_elf` writes a minimal ELF by hand whose
writable PT_LOAD holds the old header (pointer size, flags, two pointers to Go string
headers), exactly as `debug/buildinfo` reads it.
"""

from __future__ import annotations

import io
import os
import random
import shutil
import struct
import subprocess
import zipfile
from pathlib import Path

import pytest

from analyzerharness import LocalFileInput, info_from_stat, run_analyzer
from imgscan.analyzers.gobinary import GoBinaryAnalyzer
from imgscan.analyzers.interface import FileInfo, FileInput, FileKind
from imgscan.purls import package_purl

GO = shutil.which("go")


def _write_module(proxy: Path, path: str, version: str, body: str, pkg: str = "") -> None:
    d = proxy / path / "@v"
    d.mkdir(parents=True, exist_ok=True)
    gomod = f"module {path}\n\ngo 1.19\n"
    (d / f"{version}.info").write_text(f'{{"Version":"{version}","Time":"2020-01-01T00:00:00Z"}}')
    (d / f"{version}.mod").write_text(gomod)
    pkg = pkg or path.rsplit("/", 1)[1]
    with zipfile.ZipFile(d / f"{version}.zip", "w") as z:
        z.writestr(f"{path}@{version}/go.mod", gomod)
        z.writestr(f"{path}@{version}/{pkg}.go", f"package {pkg}\n\n{body}\n")
    with open(d / "list", "a") as f:
        f.write(version + "\n")


@pytest.fixture(scope="session")
def go_bins(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if GO is None:
        pytest.fail("go is not installed (apt-get install golang-go)")
    base = tmp_path_factory.mktemp("go")
    proxy = base / "proxy"
    _write_module(proxy, "example.com/liba", "v1.2.0", 'func A() string { return "a" }')
    _write_module(proxy, "example.com/libb", "v0.1.0", 'func B() string { return "b0" }')
    _write_module(proxy, "example.org/forkb", "v0.3.1", 'func B() string { return "b1" }',
                  "libb")
    app = base / "app"
    (app / "local").mkdir(parents=True)
    (app / "local" / "go.mod").write_text("module example.com/local\n\ngo 1.19\n")
    (app / "local" / "local.go").write_text('package local\n\nfunc L() string { return "l" }\n')
    (app / "go.mod").write_text(
        "module example.com/hello\n\ngo 1.19\n\n"
        "require (\n\texample.com/liba v1.2.0\n\texample.com/libb v0.1.0\n"
        "\texample.com/local v1.0.0\n)\n\n"
        "replace example.com/libb => example.org/forkb v0.3.1\n"
        "replace example.com/local => ./local\n"
    )
    (app / "main.go").write_text(
        'package main\n\nimport (\n\t"fmt"\n\t"example.com/liba"\n\t"example.com/libb"\n'
        '\t"example.com/local"\n)\n\nfunc main() { fmt.Println(liba.A(), libb.B(), local.L()) }\n'
    )
    plain = base / "plain"
    plain.mkdir()
    (plain / "go.mod").write_text("module example.com/plain\n\ngo 1.19\n")
    (plain / "main.go").write_text('package main\n\nfunc main() { println("x") }\n')
    env = dict(
        os.environ,
        GOPROXY=f"file://{proxy}",
        GOSUMDB="off",
        GOFLAGS="-mod=mod",
        GOCACHE=str(base / "cache"),
        GOMODCACHE=str(base / "modcache"),
        GOPATH=str(base / "gopath"),
        CGO_ENABLED="0",
    )
    out = base / "root" / "usr" / "local" / "bin"
    out.mkdir(parents=True)
    subprocess.run([GO, "build", "-o", str(out / "hello"), "."], cwd=app, env=env, check=True)
    subprocess.run(
        [GO, "build", "-ldflags=-s -w", "-o", str(out / "plain"), "."],
        cwd=plain, env=env, check=True,
    )
    return base / "root"


def _go_version_m(binary: Path) -> set[tuple[str, str]]:
    """Expected (name, version) pairs from the real tool: stdlib, main module, and each
    dep, a replaced dep counting as its replacement."""
    out = subprocess.run([GO, "version", "-m", str(binary)], capture_output=True, text=True,
                         check=True).stdout
    lines = out.splitlines()
    expected = {("stdlib", lines[0].split(": ", 1)[1].strip())}
    pending: tuple[str, str] | None = None
    for line in lines[1:]:
        f = line.strip("\n").lstrip("\t").split("\t")
        if f[0] in ("mod", "dep"):
            if pending:
                expected.add(pending)
            pending = (f[1], f[2])
        elif f[0] == "=>":
            pending = (f[1], f[2] if len(f) > 2 else "")
    if pending:
        expected.add(pending)
    return expected


def test_matches_go_version_m(go_bins: Path) -> None:
    result = run_analyzer(GoBinaryAnalyzer(), str(go_bins))
    assert not result.warnings
    for name in ("hello", "plain"):
        binary = go_bins / "usr/local/bin" / name
        got = {(p.name, p.version) for p in result.packages
               if p.locations == (f"/usr/local/bin/{name}",)}
        assert got == _go_version_m(binary)
    hello = [p for p in result.packages if p.locations == ("/usr/local/bin/hello",)]
    names = {p.name for p in hello}
    assert {"example.com/liba", "example.org/forkb", "./local"} <= names
    fork = next(p for p in hello if p.name == "example.org/forkb")
    assert fork.metadata["replaces"] == {"path": "example.com/libb", "version": "v0.1.0"}
    assert fork.metadata["h1_digest"].startswith("h1:")
    assert package_purl(fork, None) == "pkg:golang/example.org/forkb@v0.3.1"
    main = next(p for p in hello if p.metadata.get("main_module"))
    assert (main.name, main.version) == ("example.com/hello", "(devel)")
    assert main.metadata["build_settings"]["CGO_ENABLED"] == "0"
    plain = next(p for p in result.packages if p.metadata.get("main_module")
                 and p.name == "example.com/plain")
    assert plain.metadata["build_settings"]["-ldflags"] == "-s -w"  # Go-quoted in the binary
    assert all(not p.purl and p.layer is None for p in hello)


class _CountingInput(LocalFileInput):
    """Counts the bytes the analyzer pulls through open() streams."""

    read_bytes = 0

    def open(self):  # type: ignore[override]
        outer = self
        raw = super().open()

        class Counted(io.BufferedReader):
            def read(self, n: int | None = -1) -> bytes:  # type: ignore[override]
                data = raw.read(n)
                outer.read_bytes += len(data)
                return data

            def seek(self, *a: int) -> int:  # type: ignore[override]
                return raw.seek(*a)

            def tell(self) -> int:
                return raw.tell()

            def seekable(self) -> bool:
                return True

            def close(self) -> None:
                raw.close()

        return Counted(raw)  # type: ignore[arg-type]


def test_reads_only_headers(go_bins: Path) -> None:
    binary = go_bins / "usr/local/bin/hello"
    fi = _CountingInput(str(binary), info_from_stat("usr/local/bin/hello", binary.stat()))
    res = GoBinaryAnalyzer().analyze(fi)
    assert res is not None and res.packages
    assert fi.read_bytes < 200_000 < binary.stat().st_size


def _old_layout_elf(is64: bool, little: bool, version: str, modinfo: str) -> bytes:
    """A minimal ELF (no sections) whose single RW PT_LOAD holds a pre-1.18 build info
    header: magic, pointer size, flags (bit 0 = big-endian), then pointers to two Go
    string headers {data, len} for runtime.buildVersion and runtime.modinfo."""
    e = "<" if little else ">"
    ptr = 8 if is64 else 4
    p = "Q" if is64 else "I"
    ehsize, phsize = (64, 56) if is64 else (52, 32)
    base = 0x400000
    hdr_off = 128
    sentinel_a = b"0w\xaf\x0c\x92t\x08\x02A\xe1\xc1\x07\xe6\xd6\x18\xe6"
    sentinel_b = b"\xf92C1\x86\x18 r\x00\x82B\x10A\x16\xd8\xf2"
    mod = sentinel_a + modinfo.encode() + sentinel_b
    vers = version.encode()
    strhdr_off = hdr_off + 32 + 2 * ptr
    vers_off = strhdr_off + 4 * ptr
    mod_off = vers_off + len(vers)
    total = mod_off + len(mod)
    header = b"\xff Go buildinf:" + bytes([ptr, 0 if little else 1])
    header += struct.pack(e + p + p, base + strhdr_off, base + strhdr_off + 2 * ptr)
    header = header.ljust(32 + 2 * ptr, b"\0")
    strhdrs = struct.pack(e + p * 4, base + vers_off, len(vers), base + mod_off, len(mod))
    ident = b"\x7fELF" + bytes([2 if is64 else 1, 1 if little else 2, 1]) + b"\0" * 9
    if is64:
        eh = ident + struct.pack(e + "HHIQQQIHHHHHH", 2, 62, 1, base, ehsize, 0, 0, ehsize,
                                 phsize, 1, 64, 0, 0)
        ph = struct.pack(e + "IIQQQQQQ", 1, 6, 0, base, base, total, total, 0x1000)
    else:
        eh = ident + struct.pack(e + "HHIIIIIHHHHHH", 2, 8, 1, base, ehsize, 0, 0, ehsize,
                                 phsize, 1, 40, 0, 0)
        ph = struct.pack(e + "IIIIIIII", 1, 0, base, base, total, total, 6, 0x1000)
    out = (eh + ph).ljust(hdr_off, b"\0") + header + strhdrs + vers + mod
    assert len(out) == total
    return out


@pytest.mark.parametrize("is64,little", [(True, True), (False, False)])
def test_old_pointer_layout(tmp_path: Path, is64: bool, little: bool) -> None:
    modinfo = (
        "path\texample.com/old\nmod\texample.com/old\t(devel)\t\n"
        "dep\tgithub.com/pkg/errors\tv0.8.1\th1:abc=\n"
        "dep\tgolang.org/x/text\tv0.3.0\th1:def=\n=>\tgolang.org/x/text\tv0.3.7\th1:ghi=\n"
    )
    binary = tmp_path / "bin" / "old"
    binary.parent.mkdir()
    binary.write_bytes(_old_layout_elf(is64, little, "go1.16.15", modinfo))
    result = run_analyzer(GoBinaryAnalyzer(), str(tmp_path))
    assert not result.warnings
    assert {(p.name, p.version) for p in result.packages} == {
        ("stdlib", "go1.16.15"),
        ("example.com/old", "(devel)"),
        ("github.com/pkg/errors", "v0.8.1"),
        ("golang.org/x/text", "v0.3.7"),
    }


def _analyze_bytes(tmp_path: Path, data: bytes, mode: int = 0o755):
    p = tmp_path / "bin" / "x"
    p.parent.mkdir(exist_ok=True)
    p.write_bytes(data)
    p.chmod(mode)
    an = GoBinaryAnalyzer()
    info = info_from_stat("bin/x", p.stat())
    assert an.required(info)
    return an.analyze(LocalFileInput(str(p), info))


def test_hostile_inputs(tmp_path: Path, go_bins: Path) -> None:
    real = (go_bins / "usr/local/bin/hello").read_bytes()
    # truncated inside the module info -> warning, no partial list
    cut = real.index(b"\xff Go buildinf:") + 48
    res = _analyze_bytes(tmp_path, real[:cut])
    assert res is not None and res.warnings and not res.packages
    # truncated anywhere else: never an exception
    for frac in (0.1, 0.3, 0.5, 0.7, 0.9):
        _analyze_bytes(tmp_path, real[: int(len(real) * frac)])
    # a header cut short, garbage after the magic, a non-ELF script: no exception
    assert _analyze_bytes(tmp_path, real[:100]) is None
    assert _analyze_bytes(tmp_path, b"\x7fELF" + random.Random(4000).randbytes(4000)) is None
    assert _analyze_bytes(tmp_path, b"#!/bin/sh\necho hi\n" * 10) is None
    # old layout whose pointers point nowhere -> warning
    bad = bytearray(_old_layout_elf(True, True, "go1.16", "x\n" * 20))
    struct.pack_into("<Q", bad, 128 + 16, 0xDEAD0000)
    res = _analyze_bytes(tmp_path, bytes(bad))
    assert res is not None and res.warnings and not res.packages
    # inline header whose varint claims a huge module info -> warning, bounded
    inline = bytearray(_old_layout_elf(True, True, "go1.16", "x\n" * 20))
    inline[128 + 15] = 2
    inline[128 + 32 : 128 + 32 + 12] = b"\x08go1.20.1" + b"\xff\xff\xff"
    res = _analyze_bytes(tmp_path, bytes(inline))
    assert res is not None and res.warnings
    # without module info (no sentinels): just the toolchain
    res = _analyze_bytes(tmp_path, _old_layout_elf(True, True, "go1.10", ""))
    assert res is not None and not res.warnings
    assert [(p.name, p.version) for p in res.packages] == [("stdlib", "go1.10")]


def test_required_rules() -> None:
    an = GoBinaryAnalyzer()
    assert an.required(FileInfo("usr/bin/app", FileKind.FILE, 0o755, size=10_000))
    assert an.required(FileInfo("opt/x/bin/app", FileKind.FILE, 0o644, size=10_000))
    assert not an.required(FileInfo("etc/passwd", FileKind.FILE, 0o644, size=10_000))
    assert not an.required(FileInfo("usr/bin/huge", FileKind.FILE, 0o755, size=3 << 30))
    assert not an.required(FileInfo("usr/bin/link", FileKind.SYMLINK, 0o777))


class _BytesInput(FileInput):
    """An in-memory file, for mutation runs that would be slow through the disk."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.info = FileInfo("usr/bin/m", FileKind.FILE, 0o755, size=len(data))
        self.layer = None

    def read(self, limit: int = 1 << 26) -> bytes:
        return self.data[:limit]

    def open(self) -> io.BytesIO:  # type: ignore[override]
        return io.BytesIO(self.data)


def test_mutated_headers_never_raise(go_bins: Path) -> None:
    """Random byte changes in the ELF headers and the build-info header: a result, a
    warning or nothing, but never an exception."""

    real = (go_bins / "usr/local/bin/hello").read_bytes()
    at = real.index(b"\xff Go buildinf:")
    old = _old_layout_elf(True, True, "go1.16", "path\tx\nmod\tx\t(devel)\t\n")
    rng = random.Random(1234)
    an = GoBinaryAnalyzer()
    for i in range(400):
        base = bytearray(old if i % 2 else real)
        region = [(0, 300)] if i % 2 else [(0, 128), (at, at + 64)]
        for _ in range(rng.randint(1, 6)):
            lo, hi = rng.choice(region)
            base[rng.randrange(lo, min(hi, len(base)))] = rng.randrange(256)
        an.analyze(_BytesInput(bytes(base)))


def test_symbols_only_when_asked(tmp_path) -> None:
    """--vulns asks the gobinary analyzer for pclntab names (through the ELF reader it already
    has open); without it there is no fact and the cache key is unchanged."""
    import os
    import shutil
    import subprocess

    from analyzerharness import run_analyzer
    from imgscan.analyzers.gobinary import SYMBOLS_FACT, SYMBOLS_OPTION, GoBinaryAnalyzer
    from imgscan.analyzers.interface import ScanOptions

    go = shutil.which("go")
    assert go, "go is not installed"
    app = tmp_path / "src"
    app.mkdir()
    (app / "go.mod").write_text("module example.com/s\n\ngo 1.19\n")
    (app / "main.go").write_text('package main\n\nimport "fmt"\n\nfunc main() { fmt.Println(1) }\n')
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    subprocess.run([go, "build", "-ldflags=-s -w", "-o", str(root / "bin" / "s"), "."], cwd=app,
                   check=True, env={**os.environ, "CGO_ENABLED": "0",
                                    "GOFLAGS": "-mod=mod", "GOPROXY": "off"})
    plain = GoBinaryAnalyzer()
    assert plain.cache_key() == ""
    assert SYMBOLS_FACT not in run_analyzer(plain, str(root)).facts
    asked = GoBinaryAnalyzer(ScanOptions(extra={SYMBOLS_OPTION: True}))
    assert asked.cache_key() != ""
    rows = run_analyzer(asked, str(root)).facts[SYMBOLS_FACT]
    assert len(rows) == 1 and "fmt.Println" in rows[0]["symbols"]
    assert "pkg:fmt" in rows[0]["symbols"]
