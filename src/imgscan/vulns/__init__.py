"""Known vulnerabilities, offline: an OSV database in SQLite and matching against it.

This package never knows about images: it is handed packages (or a report) and a database
path, and returns findings in the report model.

The one step a scan takes is ``match_report(report, db_path, only_fixed=…,
strict_reachability=…) -> Report``; ``imgscan.scan(ref, vulns=True)`` and ``imgscan scan
--vulns`` both go through it. The database is built with ``import_paths`` and described by
``status``.
"""

from imgscan.vulns.db import (
    SCHEMA_VERSION,
    DatabaseError,
    ImportResult,
    SourceCounts,
    Status,
    check,
    import_paths,
    status,
)
from imgscan.vulns.match import (
    CATEGORY,
    SYMBOLS_FACT,
    MatchResult,
    match_packages,
    match_report,
)
from imgscan.vulns.osv import Problem, RecordError

__all__ = [
    "CATEGORY",
    "SCHEMA_VERSION",
    "SYMBOLS_FACT",
    "DatabaseError",
    "ImportResult",
    "MatchResult",
    "Problem",
    "RecordError",
    "SourceCounts",
    "Status",
    "check",
    "import_paths",
    "match_packages",
    "match_report",
    "status",
]
