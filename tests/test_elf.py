"""ELF hardening verdicts against Debian's checksec 2.6 and against the flags we built with.

Binaries come from gcc (one per hardening flag set), `go build`, and the machine's own
/usr/bin and /usr/lib/x86_64-linux-gnu. Expected values come from the compiler flags of the
fixture and from ``checksec --output=json --file=X``, never from imgscan's own output.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import struct
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from analyzerharness import run_analyzer
from imgscan.analyzers.elf import ElfAnalyzer, ElfFortifyPostAnalyzer
from imgscan.analyzers.elffile import ElfError as ElfFormatError
from imgscan.analyzers.elfinspect import (
    fortify_verdict,
    inspect_elf,
    libc_chk_functions,
)
from imgscan.analyzers.view import DirView

HOST_LIBC = "/lib/x86_64-linux-gnu/libc.so.6"

PROG = r"""
#include <stdio.h>
#include <string.h>
int main(int argc, char **argv) {
    char buf[32];
    strcpy(buf, argv[0]);
    printf("%s %d\n", buf, argc);
    return (int)strlen(buf);
}
"""

LIB = r"""
#include <string.h>
int lib_copy(char *dst, const char *src) { char b[64]; strcpy(b, src); strcpy(dst, b);
  return (int)strlen(b); }
"""

HARDEN = ["-O2", "-D_FORTIFY_SOURCE=2", "-fstack-protector-strong", "-fPIE", "-pie",
          "-Wl,-z,relro,-z,now"]
WEAK = ["-O0", "-U_FORTIFY_SOURCE", "-fno-stack-protector", "-fno-PIE", "-no-pie",
        "-Wl,-z,norelro"]

#: name -> (gcc flags, expected verdicts derived from those flags)
BUILDS: dict[str, tuple[list[str], dict[str, object]]] = {
    "hardened": (HARDEN, dict(relro="full", canary="yes", nx="yes", pie="yes",
                              fortify="yes", stripped=False)),
    "weak": (WEAK, dict(relro="no", canary="no", nx="yes", pie="no", fortify="no")),
    "partial": (["-O2", "-fstack-protector-strong", "-fPIE", "-pie", "-Wl,-z,relro,-z,lazy"],
                dict(relro="partial", canary="yes", pie="yes")),
    "execstack": (["-O2", "-z", "execstack"], dict(nx="no", execstack=True)),
    "stripped": ([*HARDEN, "-s"], dict(stripped=True, canary="yes", fortify="yes")),
    "static": (["-O2", "-static", "-fstack-protector-strong"],
               dict(static=True, pie="no", fortify="n/a")),
    "static_stripped": (["-O2", "-static", "-s"], dict(static=True, canary="unknown")),
    "rpath": (["-O2", "-Wl,--disable-new-dtags,-rpath,lib::/opt/x"],
              dict(rpath=["lib", "", "/opt/x"], runpath=[])),
    "runpath": (["-O2", "-Wl,--enable-new-dtags,-rpath,$ORIGIN/../lib"],
                dict(runpath=["$ORIGIN/../lib"], rpath=[])),
}


def _gcc(out: str, src: str, flags: list[str]) -> None:
    subprocess.run(["gcc", *flags, "-o", out, src], check=True, capture_output=True)


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("elfbuild")
    src = d / "prog.c"
    src.write_text(PROG)
    lib = d / "lib.c"
    lib.write_text(LIB)
    out: dict[str, str] = {}
    jobs = []
    with ThreadPoolExecutor(4) as pool:
        for name, (flags, _) in BUILDS.items():
            out[name] = str(d / name)
            jobs.append(pool.submit(_gcc, out[name], str(src), flags))
        out["shared"] = str(d / "libshared.so")
        jobs.append(pool.submit(_gcc, out["shared"], str(lib),
                                ["-O2", "-shared", "-fPIC", "-fstack-protector-strong",
                                 "-D_FORTIFY_SOURCE=2", "-Wl,-z,relro,-z,now"]))
        for j in jobs:
            j.result()
    gosrc = d / "gosrc"
    gosrc.mkdir()
    (gosrc / "go.mod").write_text("module example.com/hi\n\ngo 1.19\n")
    (gosrc / "main.go").write_text(
        'package main\n\nimport "os"\n\nfunc main() { os.Stdout.WriteString("hi\\n") }\n')
    env = dict(os.environ, GOFLAGS="-mod=mod", GOPROXY="off", GOCACHE=str(d / "gocache"),
               GOPATH=str(d / "gopath"))
    out["go"] = str(d / "gobin")
    subprocess.run(["go", "build", "-o", out["go"], "."], cwd=gosrc, env=env, check=True,
                   capture_output=True)
    return out


def _real_binaries(n: int = 22) -> list[str]:
    """A deterministic spread of the machine's own ELF executables and libraries."""
    found = []
    for d, pred in (("/usr/bin", lambda f: True),
                    ("/usr/lib/x86_64-linux-gnu", lambda f: ".so" in f)):
        for f in sorted(os.listdir(d)):
            p = os.path.join(d, f)
            if not pred(f) or os.path.islink(p) or not os.path.isfile(p):
                continue
            with open(p, "rb") as fh:
                if fh.read(4) == b"\x7fELF":
                    found.append(p)
    step = max(1, len(found) // n)
    return found[::step][:n]


def _checksec(path: str) -> dict[str, str]:
    out = subprocess.run(["checksec", "--output=json", f"--file={path}"],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)[path]


@pytest.fixture(scope="session")
def checksec_results(built: dict[str, str]) -> dict[str, dict[str, str]]:
    paths = list(built.values()) + _real_binaries()
    with ThreadPoolExecutor(4) as pool:
        return dict(zip(paths, pool.map(_checksec, paths), strict=True))


@pytest.fixture(scope="session")
def libc_chk() -> set[str]:
    with open(HOST_LIBC, "rb") as f:
        return libc_chk_functions(f)


def _mine(path: str, libc_chk: set[str]) -> dict[str, object]:
    with open(path, "rb") as f:
        facts = inspect_elf(f)
    facts.update(fortify_verdict(facts["fortify_chk"], facts["fortify_plain"], libc_chk,
                                 not (facts["static"] or facts["go"])))
    return facts


def _agree(mine: dict[str, object], ref: dict[str, str]) -> list[str]:
    """Disagreements between our verdicts and checksec's, allowing only our documented
    refinements: n/a or unknown where checksec says a flat "no"."""
    bad = []

    def same(key: str, ours: object, theirs: str) -> None:
        if ours == theirs:
            return
        if ours in ("n/a", "unknown") and theirs == "no":
            return
        if key == "canary" and ours == "n/a":  # Go: checksec may see runtime symbols
            return
        bad.append(f"{key}: ours={ours} checksec={theirs}")

    same("relro", mine["relro"], ref["relro"])
    same("canary", mine["canary"], ref["canary"])
    same("nx", mine["nx"], ref["nx"])
    same("pie", mine["pie"], ref["pie"])
    same("rpath", "yes" if mine["rpath"] else "no", ref["rpath"])
    same("runpath", "yes" if mine["runpath"] else "no", ref["runpath"])
    same("symbols", "no" if mine["stripped"] else "yes", ref["symbols"])
    same("fortify", mine["fortify"], ref["fortify_source"])
    if str(mine["fortified"]) != ref["fortified"]:
        bad.append(f"fortified: ours={mine['fortified']} checksec={ref['fortified']}")
    if str(mine["fortifiable"]) != ref["fortify-able"]:
        bad.append(f"fortifiable: ours={mine['fortifiable']} checksec={ref['fortify-able']}")
    return bad


@pytest.mark.parametrize("name", [*BUILDS, "shared", "go"])
def test_built_binaries_match_flags_and_checksec(
    name: str, built: dict[str, str], checksec_results: dict, libc_chk: set[str]
) -> None:
    path = built[name]
    mine = _mine(path, libc_chk)
    assert _agree(mine, checksec_results[path]) == []
    for key, want in BUILDS.get(name, ([], {}))[1].items():
        assert mine[key] == want, key


def test_shared_object_is_dso(built: dict[str, str], libc_chk: set[str]) -> None:
    mine = _mine(built["shared"], libc_chk)
    assert (mine["pie"], mine["type"], mine["relro"], mine["canary"]) == (
        "dso", "dyn", "full", "yes")


def test_go_binary_is_not_applicable_not_missing(built: dict[str, str],
                                                 libc_chk: set[str]) -> None:
    mine = _mine(built["go"], libc_chk)
    assert mine["go"] is True
    assert mine["canary"] == "n/a"
    assert mine["fortify"] == "n/a"
    assert mine["relro"] in ("n/a", "full", "partial")  # static Go: nothing to protect


def test_real_binaries_match_checksec(checksec_results: dict, built: dict[str, str],
                                      libc_chk: set[str]) -> None:
    real = [p for p in checksec_results if p not in built.values()]
    assert len(real) >= 20
    problems = {p: d for p in real if (d := _agree(_mine(p, libc_chk), checksec_results[p]))}
    assert problems == {}


def test_findings_for_setuid_and_execstack(built: dict[str, str], tmp_path) -> None:
    root = tmp_path / "root"
    (root / "usr/bin").mkdir(parents=True)
    for name in ("weak", "hardened", "execstack", "rpath", "runpath"):
        shutil.copy(built[name], root / "usr/bin" / name)
    os.chmod(root / "usr/bin/weak", 0o4755)
    os.chmod(root / "usr/bin/hardened", 0o4755)
    res = run_analyzer(ElfAnalyzer(), str(root))
    got = {(f.rule_id, f.location.path) for f in res.findings}
    assert got == {
        ("elf/setuid-no-pie", "/usr/bin/weak"),
        ("elf/setuid-no-canary", "/usr/bin/weak"),
        ("elf/setuid-no-full-relro", "/usr/bin/weak"),
        ("elf/execstack", "/usr/bin/execstack"),
        ("elf/rpath-insecure", "/usr/bin/rpath"),
    }
    rows = {r["path"]: r for r in res.facts["elf"]}
    assert set(rows) == {f"/usr/bin/{n}" for n in ("weak", "hardened", "execstack", "rpath",
                                                   "runpath")}
    assert rows["/usr/bin/weak"]["setuid"] is True
    assert res.warnings == []


def test_fortify_post_analyzer_over_dirview(built: dict[str, str], tmp_path,
                                            checksec_results: dict) -> None:
    root = tmp_path / "img"
    (root / "lib/x86_64-linux-gnu").mkdir(parents=True)
    (root / "usr/bin").mkdir(parents=True)
    (root / "opt/ww").mkdir(parents=True)
    os.chmod(root / "opt/ww", 0o777)
    (root / "lib64").symlink_to("lib/x86_64-linux-gnu")  # resolution stays in the image
    shutil.copy(HOST_LIBC, root / "lib/x86_64-linux-gnu/libc.so.6")
    for name in ("hardened", "weak", "static", "go"):
        shutil.copy(built[name], root / "usr/bin" / name)
    src = tmp_path / "p.c"
    src.write_text(PROG)
    subprocess.run(["gcc", "-O2", "-Wl,--enable-new-dtags,-rpath,/opt/ww:$ORIGIN/../../opt/ww",
                    "-o", str(root / "usr/bin/wwpath"), str(src)], check=True)
    res = ElfFortifyPostAnalyzer().post_analyze(DirView(str(root)), [], None)
    rows = {r["path"]: r for r in res.facts["elf-fortify"]}
    for name in ("hardened", "weak"):
        ref = checksec_results[built[name]]
        row = rows[f"/usr/bin/{name}"]
        assert (row["fortify"], str(row["fortified"]), str(row["fortifiable"])) == (
            ref["fortify_source"], ref["fortified"], ref["fortify-able"])
        assert row["libc"] == "/lib/x86_64-linux-gnu/libc.so.6"
    assert rows["/usr/bin/static"]["fortify"] == "n/a"
    assert rows["/usr/bin/go"]["fortify"] == "n/a"
    assert rows["/usr/bin/wwpath"]["rpath_world_writable"] == [
        "/opt/ww", "/usr/bin/../../opt/ww"]
    assert [(f.rule_id, f.location.path) for f in res.findings] == [
        ("elf/rpath-world-writable", "/usr/bin/wwpath")]


def test_fortify_is_na_without_glibc(built: dict[str, str], tmp_path) -> None:
    root = tmp_path / "musl"
    (root / "bin").mkdir(parents=True)
    shutil.copy(built["hardened"], root / "bin/x")
    res = ElfFortifyPostAnalyzer().post_analyze(DirView(str(root)), [], None)
    [row] = res.facts["elf-fortify"]
    assert row["fortify"] == "n/a" and row["libc"] == ""


def _mutants(data: bytes) -> dict[str, bytes]:
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    return {
        "truncated_half": data[: len(data) // 2],
        "truncated_header": data[:40],
        "truncated_100": data[:100],
        "garbage": b"\x7fELF" + os.urandom(4000),
        "huge_shnum": data[:0x3C] + struct.pack("<H", 0xFFFF) + data[0x3E:],
        "shoff_past_eof": data[:0x28] + struct.pack("<Q", 1 << 40) + data[0x30:],
        "phoff_past_eof": data[:0x20] + struct.pack("<Q", 1 << 40) + data[0x28:],
        "shstrndx_bad": data[:0x3E] + struct.pack("<H", 0xFFF0) + data[0x40:],
        "bad_section_sizes": data[:shoff] + bytes(
            b if i % 64 < 32 else 0xFF for i, b in enumerate(data[shoff:])),
    }


def test_malformed_elf_is_a_warning(built: dict[str, str], tmp_path) -> None:
    with open(built["hardened"], "rb") as f:
        data = f.read()
    root = tmp_path / "bad"
    root.mkdir()
    mutants = _mutants(data)
    for name, blob in mutants.items():
        p = root / f"{name}.so"
        p.write_bytes(blob.ljust(64, b"\0"))
    (root / "notelf.so").write_bytes(b"#!/bin/sh\n" * 20)
    res = run_analyzer(ElfAnalyzer(), str(root))  # must not raise
    warned = {os.path.basename(w.path) for w in res.warnings}
    rows = {os.path.basename(r["path"]) for r in res.facts.get("elf", [])}
    assert "notelf.so" not in warned | rows
    assert warned | rows == {f"{n}.so" for n in mutants}
    for must in ("truncated_half", "truncated_100", "garbage", "shoff_past_eof"):
        assert f"{must}.so" in warned, must
    assert all(w.message.startswith("malformed ELF") for w in res.warnings)


def test_inspect_raises_only_elfformaterror(built: dict[str, str]) -> None:
    with open(built["weak"], "rb") as f:
        data = f.read()
    for blob in _mutants(data).values():
        with contextlib.suppress(ElfFormatError):
            inspect_elf(io.BytesIO(blob))
