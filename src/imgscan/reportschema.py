"""The published JSON Schemas (the report's and the policy file's) and validation against them.

Apart from ``imgscan.reports`` so that the gate can check a baseline report or a policy file
without importing the writers; the schema files stay in ``reports/schema/``, where the wheel
ships them. jsonschema is imported only when a check runs, so nothing pays for it at start-up.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

SCHEMA_DIR = Path(__file__).resolve().parent / "reports" / "schema"
SCHEMA_PATH = SCHEMA_DIR / "report-1.0.0.schema.json"
POLICY_SCHEMA_PATH = SCHEMA_DIR / "policy-1.schema.json"


class ReportSchemaError(ValueError):
    """A report dict does not match the published schema; ``errors`` lists every problem."""

    def __init__(self, message: str, errors: list[str]) -> None:
        super().__init__(message)
        self.errors = errors


@functools.cache
def _validator(path: Path) -> Any:
    from jsonschema import Draft202012Validator

    schema = json.loads(path.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _where(error: Any) -> str:
    parts = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    return "report" + parts


def schema_errors(d: Any, schema_path: Path = SCHEMA_PATH) -> list[str]:
    """Every schema violation as ``report.findings[2].severity: 'urgent' is not one of …``,
    sorted by location so that the message is the same from run to run."""
    validator = _validator(schema_path)
    errors = sorted(validator.iter_errors(d), key=lambda e: [str(p) for p in e.absolute_path])
    return [f"{_where(e)}: {e.message}" for e in errors]


def validate_report(d: dict[str, Any]) -> None:
    """Raise ``ReportSchemaError`` naming the first problems when ``d`` is not a valid report."""
    errors = schema_errors(d)
    if errors:
        shown = "; ".join(errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        raise ReportSchemaError(
            f"report does not match {SCHEMA_PATH.name}: {shown}{more}", errors
        )
