"""The JSON report of a report-cache hit, mostly read back instead of rendered.

Rendering a large JSON report (760 KB for a Debian base image: orjson, then the checks that
keep the text the standard encoder's) costs a warm scan more than everything it reads. Two
warm runs of one image write the same document but for its last fields, ``timings``,
``created`` and ``schema_version``; so the text before them is kept next to the cached
report (``analyzers.reportcache``) the first time it is rendered, and later hits write that
text followed by those fields, which ``json.dumps`` renders as the writer would (the writer
is byte for byte the standard encoder's text).

Used only when nothing could make the document differ: the report is the cached one
(``reportcache.origin``), the gate changed nothing (no ignore file, baseline or policy),
the ``json`` format is imgscan's own writer, and the kept text was written by the same
imgscan version and writer code. Before keeping a text, its end is checked to be exactly
what would be spliced, so a change of the document's shape cannot go unnoticed.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import TYPE_CHECKING

from imgscan._version import __version__
from imgscan.analyzers import reportcache
from imgscan.reports.interface import format_entry_point, render

if TYPE_CHECKING:
    from imgscan.gate import GateConfig
    from imgscan.model import Report
    from imgscan.reports.interface import WriterOptions

_WRITER = "imgscan.reports.json_writer:JsonWriter"
#: the fields after the kept text, in the model's order (the report ends with them)
_TAIL = ("timings", "created", "schema_version")
_MARK = '\n  "timings": '
#: the code that shapes the document: a text kept by other code is not used
_CODE = ("reports/json_writer.py", "reports/common.py", "model.py", "jsonhead.py")


def json_text(report: Report, judged: Report, gate: GateConfig,
              options: WriterOptions | None) -> str | None:
    """The JSON document of ``judged`` (``report`` after ``gate``), from the kept text when
    it can be, else rendered (and kept for the next hit); None when ``report`` is not a
    cached report or the gate changed it: the caller renders as usual."""
    where = reportcache.origin(report)
    if where is None or gate.ignore is not None or gate.baseline is not None \
            or gate.policy is not None or format_entry_point("json") != _WRITER:
        return None
    stamp = _stamp()
    head = reportcache.get_head(*where, stamp)
    if head is not None:
        return head + _tail(judged)
    text = render(judged, "json", options)
    at = text.find(_MARK)
    if at >= 0 and text[at:] == _tail(judged):
        reportcache.put_head(*where, stamp, text[:at])
    return text


def _tail(report: Report) -> str:
    doc = {name: getattr(report, name) for name in _TAIL}
    return json.dumps(doc, indent=2, ensure_ascii=True)[1:] + "\n"


def _stamp() -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    h = hashlib.sha256(f"{__version__}\n".encode())
    for rel in _CODE:
        try:
            st = os.stat(os.path.join(here, rel))
            h.update(f"{rel}:{st.st_size}:{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{rel}:-\n".encode())
    return h.hexdigest()[:16]
