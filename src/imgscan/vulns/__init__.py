"""Known vulnerabilities, offline: an OSV database in SQLite and matching against it.

This package never knows about images: it is handed packages (or a report) and a database
path, and returns findings in the report model.
"""

from imgscan.vulns.db import (
    SCHEMA_VERSION,
    DatabaseError,
    ImportResult,
    Status,
    import_paths,
    status,
)
from imgscan.vulns.match import CATEGORY, MatchResult, match_packages, match_report
from imgscan.vulns.osv import Problem, RecordError

__all__ = [
    "CATEGORY",
    "SCHEMA_VERSION",
    "DatabaseError",
    "ImportResult",
    "MatchResult",
    "Problem",
    "RecordError",
    "Status",
    "import_paths",
    "match_packages",
    "match_report",
    "status",
]
