"""The writer interface and the registry of output formats.

A writer turns one ``Report`` into text on a stream; it never analyzes and never decides exit
codes. Every writer, built-in or third-party, is an entry point in the group
``imgscan.reports`` (imgscan's own are in its ``pyproject.toml``, as flake8 registers its
reporters), so a new format is a package install and this module imports no writer: loading
one format imports that writer's module and no other. ``ReportFormat`` lists the built-in
names for the CLI's choices; a test checks that each has its entry point.
"""

from __future__ import annotations

import abc
import enum
import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, TextIO

from imgscan.atomic import mkstemp
from imgscan.entrypoints import EntryPointRow
from imgscan.entrypoints import group as entry_point_group
from imgscan.errors import UsageError
from imgscan.model import Report

ENTRY_POINT_GROUP = "imgscan.reports"


@dataclass(frozen=True)
class WriterOptions:
    """What the user asked to see. ``packages``/``elf`` only change the human-readable views."""

    packages: bool = False
    elf: bool = False
    #: the table's width (None: ``COLUMNS``, else the terminal's); ``wide``: cut nothing
    width: int | None = None
    wide: bool = False


class Writer(abc.ABC):
    """Render a report in one format."""

    format_name: ClassVar[str]
    #: the extension a file of this format usually has (for ``--output DIR`` style wiring)
    extension: ClassVar[str] = ".txt"

    def __init__(self, options: WriterOptions | None = None) -> None:
        self.options = options or WriterOptions()

    @abc.abstractmethod
    def write(self, report: Report, out: TextIO) -> None:  # pragma: no cover
        """Write the whole document for ``report`` to ``out``."""


class ReportFormat(str, enum.Enum):
    """The built-in output formats (the CLI's ``--format`` choices)."""

    JSON = "json"
    TABLE = "table"
    SARIF = "sarif"
    CYCLONEDX = "cyclonedx"
    SPDX = "spdx"
    HTML = "html"
    ATOMIC = "atomic"


#: the distribution whose entry points are the built-in formats
_BUILTIN_DISTRIBUTION = "imgscan"

def _is_builtin(ep: EntryPointRow) -> bool:
    if ep.distribution == "?":  # metadata without a distribution: judge by where it lives
        return ep.value.startswith("imgscan.reports.")
    return ep.distribution.lower() == _BUILTIN_DISTRIBUTION


def _entry_points() -> dict[str, EntryPointRow]:
    """Every registered format by name, without importing any; when a third party registers
    a built-in name too, imgscan's own entry point wins."""
    found: dict[str, EntryPointRow] = {}
    for ep in entry_point_group(ENTRY_POINT_GROUP):
        if ep.name not in found or _is_builtin(ep):
            found[ep.name] = ep
    return found


def format_entry_point(name: str) -> str | None:
    """``module:attr`` of the writer registered for ``name`` (without importing it)."""
    ep = _entry_points().get(name)
    return ep.value if ep is not None else None


def available_formats() -> list[str]:
    """Built-in format names first, then plugin names (sorted), without importing plugins."""
    names = [f.value for f in ReportFormat]
    names += sorted(n for n in _entry_points() if n not in names)
    return names


def builtin_writer_class(fmt: ReportFormat) -> type[Writer]:
    """The class of a built-in format, loaded through its entry point like any other."""
    return writer_class(ReportFormat(fmt).value)


def writer_class(name: str) -> type[Writer]:
    """The class for a format name; imports that writer's module and no other."""
    ep = _entry_points().get(name)
    if ep is None:
        raise UsageError(
            f"unknown report format {name!r} (one of {', '.join(available_formats())})"
        )
    try:
        cls = ep.load()
    except Exception as e:  # a broken plugin is the user's environment, say which
        raise UsageError(f"report format {name!r} from {ep.value} failed to load: {e}") from e
    if not (isinstance(cls, type) and issubclass(cls, Writer)):
        raise UsageError(f"report format {name!r} ({ep.value}) is not an imgscan Writer")
    return cls


def get_writer(name: str, options: WriterOptions | None = None) -> Writer:
    """A ready writer for ``name`` (``json``, ``table``, … or a plugin's name)."""
    return writer_class(name)(options)


class _Writers:
    """``WRITERS[name]`` → writer class, ``name in WRITERS``, iteration over format names."""

    def __getitem__(self, name: str) -> type[Writer]:
        return writer_class(name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in available_formats()

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(available_formats())

    def __len__(self) -> int:
        return len(available_formats())


WRITERS = _Writers()


@dataclass(frozen=True)
class OutputSpec:
    """One ``--format F[=FILE]``: a format and where it goes (None: the default output)."""

    format: str
    path: Path | None = None


def parse_format_spec(spec: str) -> OutputSpec:
    """``sarif=out.sarif`` → OutputSpec('sarif', Path('out.sarif')); ``json`` → no path."""
    name, sep, path = spec.partition("=")
    name = name.strip().lower()
    if not name:
        raise UsageError(f"--format {spec!r}: no format name")
    if name not in WRITERS:
        raise UsageError(
            f"--format {spec!r}: unknown format {name!r} (one of {', '.join(available_formats())})"
        )
    if sep and not path:
        raise UsageError(f"--format {spec!r}: empty file name after '='")
    return OutputSpec(name, Path(path) if sep else None)


def plan_outputs(specs: list[str], output: str | Path | None = None,
                 default: str = "table") -> list[OutputSpec]:
    """Resolve repeated ``--format F[=FILE]`` and ``--output FILE`` into one target each.

    A format without ``=FILE`` goes to ``--output`` (or stdout, ``path=None``); only one may,
    so two reports never interleave on one stream. No ``--format`` means ``default``. Two
    formats writing one file is an error too."""
    parsed = [parse_format_spec(s) for s in specs] or [OutputSpec(default)]
    bare = [p for p in parsed if p.path is None]
    if len(bare) > 1:
        names = ", ".join(p.format for p in bare)
        raise UsageError(f"formats {names} would all go to "
                         f"{'--output' if output else 'stdout'}; give all but one a file "
                         "(--format F=FILE)")
    out = Path(output) if output else None
    plan = [OutputSpec(p.format, out) if p.path is None else p for p in parsed]
    paths = [str(p.path) for p in plan if p.path is not None]
    dup = sorted({x for x in paths if paths.count(x) > 1})
    if dup:
        raise UsageError(f"more than one format would write {', '.join(dup)}")
    return plan


def render(report: Report, name: str, options: WriterOptions | None = None) -> str:
    """The whole document as a string."""
    import io

    buf = io.StringIO()
    get_writer(name, options).write(report, buf)
    return buf.getvalue()


def write_file(report: Report, name: str, path: Path,
               options: WriterOptions | None = None, text: str | None = None) -> None:
    """Write a report atomically: rendered completely, then renamed into place, so a failed
    run never leaves half a file for a CI step to pick up. Text that cannot be encoded (lone
    surrogates from undecodable file names) is written as backslash escapes. ``text``: the
    document, already rendered."""
    if text is None:
        text = render(report, name, options)
    path = Path(path)
    if path.exists() and not path.is_file():
        # /dev/null, /dev/stdout, a FIFO: write into it; renaming over it would replace the
        # device node itself with a regular file
        with open(path, "w", encoding="utf-8", errors="backslashreplace", newline="") as f:
            f.write(text)
        return
    parent = path.parent if str(path.parent) else Path(".")
    fd, tmp = mkstemp(str(parent), prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace",
                       newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
