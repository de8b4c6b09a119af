"""The canonical JSON report: ``Report.to_dict()`` in canonical order.

Field order comes from the model (no ``sort_keys``), lists are sorted by ``common.canonical``,
so two scans of one image differ only in ``created`` and ``timings``. ASCII-only output keeps
undecodable file names (lone surrogates) representable.
"""

from __future__ import annotations

import json
from typing import Any, TextIO

from imgscan.model import Report
from imgscan.reports.common import canonical
from imgscan.reports.interface import Writer


def canonical_dict(report: Report) -> dict[str, Any]:
    """The JSON value of the report, lists in canonical order."""
    return canonical(report).to_dict()


def dumps(report: Report) -> str:
    return json.dumps(canonical_dict(report), indent=2, ensure_ascii=True) + "\n"


class JsonWriter(Writer):
    format_name = "json"
    extension = ".json"

    def write(self, report: Report, out: TextIO) -> None:
        out.write(dumps(report))
