"""Build small noarch RPMs with the real rpmbuild and install them into a root with rpm,
so the rpm cataloger is compared against what rpm itself reports."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field


@dataclass
class Spec:
    name: str
    version: str
    release: str
    epoch: int | None = None
    license: str = "MIT"
    files: tuple[str, ...] = ()
    #: (subpackage name, its files): built from the same source rpm
    subpackages: tuple[tuple[str, tuple[str, ...]], ...] = ()
    extra: list[str] = field(default_factory=list)

    def text(self) -> str:
        lines = [f"Name: {self.name}", f"Version: {self.version}", f"Release: {self.release}"]
        if self.epoch is not None:
            lines.append(f"Epoch: {self.epoch}")
        lines += [f"Summary: {self.name} test package", f"License: {self.license}",
                  "BuildArch: noarch", *self.extra, "%description", "test package", ""]
        for sub, _ in self.subpackages:
            lines += [f"%package -n {sub}", f"Summary: {sub}", f"%description -n {sub}",
                      "sub", ""]
        lines.append("%install")
        every = list(self.files) + [f for _, fs in self.subpackages for f in fs]
        for path in every:
            lines.append(f"mkdir -p %{{buildroot}}{os.path.dirname(path)}")
            lines.append(f"echo {self.name}-{self.release} > %{{buildroot}}{path}")
        lines += ["", "%files", *self.files, ""]
        for sub, fs in self.subpackages:
            lines += [f"%files -n {sub}", *fs, ""]
        return "\n".join(lines) + "\n"


def build(topdir: str, spec: Spec) -> list[str]:
    """rpmbuild -bb the spec; returns the built .rpm paths."""
    os.makedirs(topdir, exist_ok=True)
    path = os.path.join(topdir, f"{spec.name}-{spec.version}-{spec.release}.spec")
    with open(path, "w") as f:
        f.write(spec.text())
    subprocess.run(
        ["rpmbuild", "-bb", "--define", f"_topdir {topdir}", path],
        capture_output=True, text=True, check=True,
    )
    rpms = []
    noarch = os.path.join(topdir, "RPMS", "noarch")
    want = {spec.name, *(s for s, _ in spec.subpackages)}
    for fn in sorted(os.listdir(noarch)):
        for n in want:
            if fn == f"{n}-{spec.version}-{spec.release}.noarch.rpm":
                rpms.append(os.path.join(noarch, fn))
    return rpms


def rpm(root: str, *args: str) -> str:
    return subprocess.run(
        ["rpm", "--root", root, "--dbpath", "/var/lib/rpm", *args],
        capture_output=True, text=True, check=True,
    ).stdout


QUERY = "%{NAME}\\t%{EVR}\\t%{ARCH}\\t%{SOURCERPM}\\t%{LICENSE}\\t%{EPOCH}\\n"


def query_all(root: str) -> list[tuple[str, ...]]:
    """rpm -qa as (name, evr, arch, sourcerpm, license, epoch) rows."""
    return sorted(tuple(line.split("\t")) for line in rpm(root, "-qa", "--qf", QUERY).splitlines())


FILES_QUERY = "[%{=NAME}\\t%{=EVR}\\t%{FILENAMES}\\n]"


def query_files(root: str) -> dict[tuple[str, str], set[str]]:
    """(name, evr) -> the file paths rpm lists for it."""
    return parse_files(rpm(root, "-qa", "--qf", FILES_QUERY))


def query_files_db(dbdir: str, backend: str) -> dict[tuple[str, str], set[str]]:
    """The same for a bare database directory (rpm writes beside it: pass a copy)."""
    text = subprocess.run(
        ["rpm", "--dbpath", dbdir, "--define", f"_db_backend {backend}", "-qa",
         "--qf", FILES_QUERY],
        capture_output=True, text=True, check=True,
    ).stdout
    return parse_files(text)


def parse_files(text: str) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for line in text.splitlines():
        name, evr, path = line.split("\t")
        out.setdefault((name, evr), set()).add(path)
    return out
