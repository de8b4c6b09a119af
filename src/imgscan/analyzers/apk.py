"""The apk cataloger: ``lib/apk/db/installed`` (Alpine, Wolfi, Chainguard), FORMATS.md §5.4.

Paragraphs of ``<letter>:<value>`` lines. ``P`` starts a package; ``F`` names a directory
and the ``R`` lines after it are files in it, so a package's files are ``/F/R``. File ACL
lines (``a:uid:gid:mode``) are kept in metadata, keyed by path, for setuid cross-checks.

A file that does not end with a newline keeps its last package, as apk reads it (some tools
write the database without one), unless the unfinished line is that package's name or version,
which a cut may have shortened: reporting a wrong version is worse than a warning.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from imgscan.analyzers.interface import AnalysisResult, Analyzer, FileInfo, FileInput
from imgscan.model import Package, ScanWarning

APK_DB_PATHS = frozenset({"lib/apk/db/installed", "usr/lib/apk/db/installed"})
MAX_DB = 256 << 20
#: fields copied into Package.metadata
_METADATA = {"T": "description", "U": "url", "m": "maintainer", "t": "build_time",
             "c": "commit", "S": "size", "I": "installed_size", "C": "checksum",
             "D": "depends", "p": "provides"}


@dataclass
class _Pkg:
    fields: dict[str, str] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    acls: dict[str, str] = field(default_factory=dict)
    line: int = 0
    cur_dir: str | None = None


class ApkAnalyzer(Analyzer):
    """Installed apk packages and their files."""

    name = "apk"
    version = 2  # 2: issue 15 (results changed; cached layers are re-analyzed)
    description = "apk installed database"
    max_read = MAX_DB

    def required(self, info: FileInfo) -> bool:
        return info.is_regular and info.path in APK_DB_PATHS

    def analyze(self, file: FileInput) -> AnalysisResult:
        result = AnalysisResult()
        location = "/" + file.info.path

        def warn(msg: str) -> None:
            result.warnings.append(ScanWarning(message=msg, path=location, analyzer=self.name))

        data = file.read(self.max_read)
        if file.info.size > self.max_read:
            warn(f"database larger than {self.max_read} bytes; read cut")
        text = data.decode("utf-8", errors="replace")
        lines = text.split("\n")
        # no final newline: the last line may have been cut; only a cut name or version
        # makes the last package untrustworthy
        truncated = bool(text) and not text.endswith("\n") and (
            len(lines[-1]) < 2 or lines[-1][1] != ":" or lines[-1][0] in "PV")
        pkgs: list[_Pkg] = []
        cur: _Pkg | None = None
        bad_lines: list[int] = []
        for no, line in enumerate(lines, 1):
            if truncated and no == len(lines):
                break  # the cut line: reported below with its package, not as malformed
            if not line:
                if cur is not None:
                    pkgs.append(cur)
                cur = None
                continue
            if len(line) < 2 or line[1] != ":":
                bad_lines.append(no)
                continue
            key, value = line[0], line[2:]
            if cur is None:
                cur = _Pkg(line=no)
            if key == "F":
                cur.cur_dir = value.strip("/")
            elif key == "R":
                if cur.cur_dir is None:
                    bad_lines.append(no)
                    continue
                cur.files.append("/" + (f"{cur.cur_dir}/{value}" if cur.cur_dir else value))
            elif key == "a":
                if cur.files:
                    cur.acls[cur.files[-1]] = value
            elif key in ("M", "Z"):
                pass
            else:
                cur.fields.setdefault(key, value)
        if truncated:
            start = cur.line if cur is not None else len(lines)
            warn(f"file ends mid-line (truncated); the package from line {start} was dropped")
        elif cur is not None:
            pkgs.append(cur)
        if bad_lines:
            shown = ", ".join(map(str, bad_lines[:10]))
            warn(f"{len(bad_lines)} malformed line(s) ignored (line {shown})")
        for p in pkgs:
            name, version = p.fields.get("P", ""), p.fields.get("V", "")
            if not name or not version:
                warn(f"package at line {p.line} has no P: name or no V: version")
                continue
            metadata: dict[str, object] = {
                out: p.fields[k] for k, out in _METADATA.items() if k in p.fields
            }
            if p.acls:
                metadata["file_acls"] = p.acls
            lic = p.fields.get("L", "")
            result.packages.append(Package(
                type="apk",
                name=name,
                version=version,
                arch=p.fields.get("A", ""),
                source_name=p.fields.get("o", "") or name,
                source_version=version,
                licenses=(lic,) if lic else (),
                locations=(location,),
                metadata=metadata,
                files=tuple(p.files),
            ))
        return result
