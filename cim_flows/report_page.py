"""The page primitives of `cim report`: escaping, tables, the note for a missing artifact,
reading a run directory's JSON, and the page object the sections draw their figures through.

Every section module (report_network, report_results, report_impl, sweep_report,
coverage_report, asic_report) builds its HTML from these.
"""

from __future__ import annotations

import html
import io
import json
from pathlib import Path

from cim_spec import files


def load_json(path: Path) -> dict | None:
    """A run directory's JSON artifact, or None when it is absent or not JSON (the section
    then says which command makes it)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def _e(x) -> str:
    return html.escape(str(x))


def _table(head: list, rows: list[list], left: int = 1) -> str:
    """An HTML table; the first `left` columns are text (left-aligned), the rest figures."""
    th = "".join(f"<th class='{'l' if i < left else ''}'>{_e(h)}</th>" for i, h in
                 enumerate(head))
    body = "".join("<tr>" + "".join(f"<td class='{'l' if i < left else ''}'>{_e(c)}</td>"
                                    for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def _missing(what: str, cmd: str) -> str:
    return (f"<p class='missing'>No {_e(what)} in this run directory. Make it with "
            f"<code>{_e(cmd)}</code>.</p>")


class _Page:
    """The page being built: the run directory, the output directory, matplotlib (headless)
    and each section's status ("ok" or "missing")."""

    def __init__(self, run: Path, out: Path):
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        self.plt, self.run, self.out = plt, run, out
        self.status: dict[str, str] = {}

    def figure(self, fig, name: str) -> str:
        """Write `fig` as OUT/name.png (atomically) and return the <img> that shows it."""
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90)
        files.write_bytes(self.out / f"{name}.png", buf.getvalue())
        self.plt.close(fig)
        return f"<img src='{name}.png' alt='{_e(name)}'>"
