"""CSV: every table with exact values (a total row last), for spreadsheets and scripts; notes are left out.

Several tables are separated by a blank line; a document with no table (``check``) gives its lines as they are.
"""

from __future__ import annotations

import csv
import io

from modelprof.reports.document import Document


def render(document: Document, color: bool = False) -> str:
    """The document's tables as CSV with exact values."""
    if not document.tables:
        return "".join(note.text + "\n" for note in document.blocks)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for index, table in enumerate(document.tables):
        if index:
            out.write("\n")
        writer.writerow([c.title for c in table.columns])
        for row in (*table.rows, *((table.total,) if table.total else ())):
            writer.writerow([cell.exact for cell in row])
    return out.getvalue()
