"""Report writers and the report's JSON Schema.

Every writer renders the one model in ``imgscan.model``; the JSON writer is its canonical form
and ``schema/report-1.0.0.schema.json`` describes it. Writers are looked up through
``imgscan.reports.interface.get_writer``; this module stays import-light (no jsonschema until
``validate_report`` is called) so that ``imgscan mount`` never pays for reports.
"""

from __future__ import annotations

from typing import Any

from imgscan.reportschema import (
    POLICY_SCHEMA_PATH,
    SCHEMA_DIR,
    SCHEMA_PATH,
    ReportSchemaError,
    schema_errors,
    validate_report,
)

__all__ = [
    "POLICY_SCHEMA_PATH",
    "SCHEMA_DIR",
    "SCHEMA_PATH",
    "WRITERS",
    "ReportSchemaError",
    "get_writer",
    "render",
    "schema_errors",
    "validate_report",
    "write_file",
]

_LAZY = {"WRITERS", "get_writer", "render", "write_file"}


def __getattr__(name: str) -> Any:
    """The registry's names, imported on first use (``from imgscan.reports import get_writer``)."""
    if name in _LAZY:
        from imgscan.reports import interface

        return getattr(interface, name)
    raise AttributeError(name)
