"""Version orderings against the real tools: `dpkg --compare-versions` and rpm's `rpm.vercmp`
on hundreds of generated pairs (epochs, `~`, `^`, revisions, letters), and hand cases for
apk (apk-tools' rules), SemVer, Go, PEP 440 and Maven."""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest

from imgscan import versions
from imgscan.versions import (
    apk_compare,
    compare_for,
    dpkg_compare,
    go_compare,
    go_toolchain_semver,
    maven_compare,
    pep440_compare,
    rpm_compare,
    rpmvercmp,
    semver_compare,
)


def _dpkg_version(rng: random.Random) -> str:
    def part(chars: str) -> str:
        out = str(rng.randint(0, 12))
        for _ in range(rng.randint(0, 4)):
            out += rng.choice(chars)
            if rng.random() < 0.6:
                out += str(rng.choice([0, 1, 2, 9, 10, 11, 100]))
        return out
    v = part(".~+abzAZ")
    if rng.random() < 0.3:
        v = f"{rng.randint(0, 3)}:{v}"
    if rng.random() < 0.6:
        v += "-" + part(".~+bdeu")
    return v


def _pairs(gen, n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        a = gen(rng)
        # half the pairs share a prefix so that the interesting tail decides
        b = (a[: rng.randint(0, len(a))] + gen(rng).split(":")[-1] \
        if rng.random() < 0.5 else gen(rng))
        if rng.random() < 0.1:
            b = a
        pairs.append((a, b))
    return pairs


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="needs dpkg")
def test_dpkg_against_dpkg(tmp_path: Path) -> None:
    pairs = _pairs(_dpkg_version, 400, 16)
    pairs += [("1.0~rc1", "1.0"), ("1.0", "1.0a"), ("1.0a", "1.0+b1"), ("1.0-1", "1.0-1+deb12u1"),
              ("1:0.1", "2.0"), ("1.0~~", "1.0~"), ("2.30-0ubuntu1", "2.30-0ubuntu1~")]
    script = tmp_path / "cmp.sh"
    lines = ["#!/bin/sh"]
    for a, b in pairs:
        lines.append(f"if dpkg --compare-versions '{a}' lt '{b}' 2>/dev/null; then echo -1; "
                     f"elif dpkg --compare-versions '{a}' eq '{b}' 2>/dev/null; then echo 0; "
                     "else echo 1; fi")
    script.write_text("\n".join(lines) + "\n")
    out = subprocess.run(["sh", str(script)], capture_output=True, text=True, check=True)
    expected = [int(x) for x in out.stdout.split()]
    assert len(expected) == len(pairs)
    wrong = [(a, b, e, dpkg_compare(a, b)) for (a, b), e in zip(pairs, expected, strict=True)
             if dpkg_compare(a, b) != e]
    assert not wrong
    assert len({e for e in expected}) == 3  # the generator exercises all outcomes


def _rpm_version(rng: random.Random) -> str:
    def part() -> str:
        out = rng.choice(["", "0", "1", "2", "10", "a", "b"]) or str(rng.randint(0, 9))
        for _ in range(rng.randint(0, 4)):
            out += rng.choice([".", "~", "^", "_", "+", "", "."])
            out += rng.choice(["0", "1", "01", "2", "10", "999", "a", "rc", "git", "Z", ""])
        return out
    v = part()
    if rng.random() < 0.25:
        v = f"{rng.randint(0, 2)}:{v}"
    if rng.random() < 0.6:
        v += "-" + part()
    return v


@pytest.mark.skipif(shutil.which("rpm") is None, reason="needs rpm")
def test_rpm_against_rpm() -> None:
    pairs = _pairs(_rpm_version, 500, 17)
    pairs += [("1.0~rc1", "1.0"), ("1.0^git1", "1.0"), ("1.0^x", "1.0.1"), ("1.0", "1_0"),
              ("1.0-1", "1.0"), ("1:1.0", "2.0"), ("a", "1"), ("1.01", "1.1"), ("1.0a", "1.0.a")]
    lua = "local p = {" + ",".join(f"{{{_lua(a)},{_lua(b)}}}" for a, b in pairs) + "}\n"
    lua += "for _, x in ipairs(p) do print(rpm.vercmp(x[1], x[2]) .. ' ') end"
    out = subprocess.run(["rpm", "--eval", "%{lua:" + lua + "}"], capture_output=True,
                         text=True, check=True)
    expected = [int(x) for x in out.stdout.split()]
    assert len(expected) == len(pairs)
    wrong = [(a, b, e, rpm_compare(a, b)) for (a, b), e in zip(pairs, expected, strict=True)
             if rpm_compare(a, b) != e]
    assert not wrong
    assert len(set(expected)) == 3
    # the segment comparison on its own, for strings that carry no epoch or release
    plain = [(a, b) for a, b in pairs if not any(c in a + b for c in ":-")]
    assert len(plain) > 50
    for (a, b), e in zip(pairs, expected, strict=True):
        if (a, b) in plain:
            assert rpmvercmp(a, b) == e, (a, b)


def _lua(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


@pytest.mark.parametrize("a,b,want", [
    ("1.0_rc1", "1.0", -1), ("1.0_alpha", "1.0_beta", -1), ("1.0_pre1", "1.0_rc1", -1),
    ("1.0", "1.0-r1", -1), ("1.0-r1", "1.0-r2", -1), ("1.0-r9", "1.0-r10", -1),
    ("1.0-r1", "1.0.1", -1), ("1.0", "1.0a", -1), ("1.0a", "1.0b", -1), ("1.0", "1.0_p1", -1),
    ("1.0a", "1.0_p1", 1),  # a letter comes before suffixes in the grammar, so it ranks above
    ("1.0_cvs", "1.0_svn", -1), ("1.0_git", "1.0_hg", -1), ("1.0_hg", "1.0_p", -1),
    ("1.01", "1.1", -1), ("1.001", "1.01", -1), ("1.10", "1.9", 1), ("10", "9", 1),
    ("2.4.2-r0", "2.4.10-r0", -1), ("1.0_alpha1", "1.0_alpha2", -1),
    ("1.0~abc", "1.0~abd", -1),
    ("1.0_rc1-r3", "1.0-r0", -1), ("3.0.12-r0", "3.0.12-r0", 0),
    ("1.2.3_p1-r2", "1.2.3_p1-r10", -1),
])
def test_apk(a: str, b: str, want: int) -> None:
    assert apk_compare(a, b) == want
    assert apk_compare(b, a) == -want


@pytest.mark.parametrize("bad", ["", "abc", "1.0-x1", "1.0__rc", "1.0ab", "1.0_bogus1",
                                 "1.0-r1.2"])
def test_apk_invalid(bad: str) -> None:
    with pytest.raises(ValueError):
        apk_compare(bad, "1.0")


@pytest.mark.parametrize("a,b,want", [
    ("1.0.0-alpha", "1.0.0-alpha.1", -1), ("1.0.0-alpha.1", "1.0.0-alpha.beta", -1),
    ("1.0.0-alpha.beta", "1.0.0-beta", -1), ("1.0.0-beta.2", "1.0.0-beta.11", -1),
    ("1.0.0-rc.1", "1.0.0", -1), ("1.0.0+build", "1.0.0", 0), ("v1.2.3", "1.2.3", 0),
    ("=1.2.3", "1.2.4", -1),
])
def test_semver(a: str, b: str, want: int) -> None:
    assert semver_compare(a, b) == want
    assert versions.npm_compare(a, b) == want
    assert versions.crates_compare(a, b) == want


def test_go() -> None:
    assert go_toolchain_semver("go1.19.8") == "1.19.8"
    assert go_toolchain_semver("go1.19") == "1.19.0"
    assert go_toolchain_semver("go1.21rc2") == "1.21.0-rc.2"
    assert go_toolchain_semver("go1.22.3 X:boringcrypto") == "1.22.3"
    assert go_compare("go1.19.8", "1.19.9") == -1
    assert go_compare("go1.21rc2", "1.21.0") == -1
    assert go_compare("v0.0.0-20210101000000-abcdefabcdef", "v0.0.1") == -1
    assert go_compare("v0.3.5", "0.3.7") == -1
    with pytest.raises(ValueError):
        go_toolchain_semver("devel +abc")


@pytest.mark.parametrize("a,b,want", [
    ("1.0.dev1", "1.0a1", -1), ("1.0a1", "1.0b1", -1), ("1.0rc1", "1.0", -1),
    ("1.0", "1.0.post1", -1), ("1.0", "1.0.0", 0), ("1!0.1", "2.0", 1), ("1.0+local", "1.0", 1),
    ("2.10", "2.9", 1), ("1.0-1", "1.0.post1", 0),
])
def test_pep440(a: str, b: str, want: int) -> None:
    assert pep440_compare(a, b) == want


@pytest.mark.parametrize("a,b,want", [
    ("1.0-alpha1", "1.0-beta1", -1), ("1.0-beta1", "1.0-milestone1", -1),
    ("1.0-milestone1", "1.0-rc1", -1), ("1.0-rc1", "1.0-SNAPSHOT", -1), ("1.0-SNAPSHOT", "1.0", -1),
    ("1.0", "1.0-sp1", -1), ("1.0", "1.0.0", 0), ("1.0-ga", "1.0", 0), ("1.0-final", "1.0", 0),
    ("2.0.0.RELEASE", "2.0.0", 0), ("1.0-cr1", "1.0-rc1", 0), ("1.0a1", "1.0-alpha-1", 0),
    ("1-1", "1.1", -1), ("1.0.1", "1.0-sp1", 1), ("2.12.7.1", "2.12.7", 1),
    ("2.13.0", "2.12.7.1", 1), ("1.0-foo", "1.0-sp", 1), ("1.0-foo", "1.0-bar", 1),
    ("9", "10", -1), ("1.0.0-jre", "1.0.0", 1),
])
def test_maven(a: str, b: str, want: int) -> None:
    assert maven_compare(a, b) == want
    assert maven_compare(b, a) == -want


def test_dispatch() -> None:
    assert compare_for("Debian:12") is dpkg_compare
    assert compare_for("Ubuntu:22.04:LTS") is dpkg_compare
    assert compare_for("Alpine:v3.19") is apk_compare
    assert compare_for("Red Hat:rhel_aus:8.4::appstream") is rpm_compare
    assert compare_for("PyPI") is pep440_compare
    assert compare_for("Go") is go_compare
    assert compare_for("Maven:https://repo.example") is maven_compare
    assert compare_for("Hackage") is None


def test_gate_uses_these_orderings() -> None:
    """The policy file's banned-package ranges order versions with exactly these functions, so a
    policy range and a vulnerability range never disagree about the same two versions."""
    from imgscan.gate import policyfile

    assert policyfile.COMPARATORS is versions.COMPARATORS
    assert versions.COMPARATORS["deb"] is versions.dpkg_compare
    assert versions.COMPARATORS["apk"] is versions.apk_compare
