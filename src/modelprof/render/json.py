"""JSON: the document's data (exact numbers, ``kind`` and ``schema_version`` first), indented."""

from __future__ import annotations

import json

from modelprof.reports.document import Document


def render(document: Document, color: bool = False) -> str:
    """The report's JSON form, as documented in the README."""
    return json.dumps(document.data, indent=2) + "\n"
