"""A formatted table and its renderings: DataFrame, Markdown, HTML, LaTeX, CSV, Word."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from evalkit._errors import EvalkitInputError
from evalkit._typing import TableFormat
from evalkit._validate import check_option

_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "−": "$-$",
    "∞": r"$\infty$",
    "<": r"$<$",
    ">": r"$>$",
}


def latex_escape(text: str) -> str:
    """Escape LaTeX's special characters in ``text``."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


@dataclass(frozen=True)
class Table:
    """A publication table: formatted cells, a title, notes and the numbers behind it.

    Attributes
    ----------
    body
        Formatted cells (strings); the index holds the row labels.
    title
        Table title.
    notes
        Sentences printed under the table (``Note.`` in APA style).
    data
        The unformatted numbers, for users who want to compute with them.
    """

    body: pd.DataFrame
    title: str = ""
    notes: tuple[str, ...] = ()
    data: pd.DataFrame = field(default_factory=pd.DataFrame)
    stub_header: str = ""

    def to_frame(self) -> pd.DataFrame:
        """The formatted cells with the row labels as the first column."""
        frame = self.body.copy()
        frame.index.name = self.stub_header or None
        return frame.reset_index()

    def _note_text(self) -> str:
        return " ".join(self.notes)

    def to_markdown(self) -> str:
        """GitHub-flavoured Markdown with the title above and notes below."""
        frame = self.to_frame()
        table = tabulate(
            frame.values.tolist(),
            headers=list(frame.columns),
            tablefmt="pipe",
            disable_numparse=True,
        )
        parts = [f"**{self.title}**", ""] if self.title else []
        parts.append(table)
        if self.notes:
            parts.extend(["", f"*Note.* {self._note_text()}"])
        return "\n".join(parts) + "\n"

    def to_html(self) -> str:
        """A standalone HTML ``<table>`` with caption and a notes footer."""
        frame = self.to_frame()
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
        rows = []
        for values in frame.itertuples(index=False):
            cells = "".join(f"<td>{html.escape(str(v))}</td>" for v in values)
            rows.append(f"<tr>{cells}</tr>")
        caption = f"<caption>{html.escape(self.title)}</caption>" if self.title else ""
        foot = ""
        if self.notes:
            foot = (
                f'<tfoot><tr><td colspan="{len(frame.columns)}"><em>Note.</em> '
                f"{html.escape(self._note_text())}</td></tr></tfoot>"
            )
        return (
            f'<table class="evalkit-table">{caption}<thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody>{foot}</table>\n"
        )

    def to_latex(self) -> str:
        """A ``table`` environment with booktabs rules (needs ``\\usepackage{booktabs}``)."""
        frame = self.to_frame()
        spec = "l" + "c" * (len(frame.columns) - 1)
        lines = [r"\begin{table}[htbp]", r"\centering"]
        if self.title:
            lines.append(rf"\caption{{{latex_escape(self.title)}}}")
        lines += [rf"\begin{{tabular}}{{{spec}}}", r"\toprule"]
        lines.append(" & ".join(latex_escape(str(c)) for c in frame.columns) + r" \\")
        lines.append(r"\midrule")
        for values in frame.itertuples(index=False):
            lines.append(" & ".join(latex_escape(str(v)) for v in values) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}"]
        if self.notes:
            lines.append(rf"\par\footnotesize\textit{{Note.}} {latex_escape(self._note_text())}")
        lines.append(r"\end{table}")
        return "\n".join(lines) + "\n"

    def to_csv(self) -> str:
        """The formatted cells as CSV (title and notes are not part of CSV)."""
        return str(self.to_frame().to_csv(index=False))

    def to_docx(self, path: str | Path) -> Path:
        """Write a Word document holding the table, its title and its notes."""
        from docx import Document
        from docx.shared import Pt

        frame = self.to_frame()
        document = Document()
        if self.title:
            title = document.add_paragraph()
            title.add_run(self.title).bold = True
        table = document.add_table(rows=len(frame) + 1, cols=len(frame.columns))
        table.style = "Table Grid"
        for j, name in enumerate(frame.columns):
            table.cell(0, j).text = str(name)
        for i, values in enumerate(frame.itertuples(index=False), start=1):
            for j, value in enumerate(values):
                table.cell(i, j).text = str(value)
        if self.notes:
            note = document.add_paragraph()
            note.add_run("Note. ").italic = True
            run = note.add_run(self._note_text())
            run.font.size = Pt(9)
        path = Path(path)
        document.save(str(path))
        return path

    def save(self, path: str | Path, *, format: TableFormat | None = None) -> Path:
        """Write the table to ``path`` in ``format`` (inferred from the suffix if omitted)."""
        path = Path(path)
        chosen = format or {
            ".md": "md",
            ".html": "html",
            ".tex": "tex",
            ".csv": "csv",
            ".docx": "docx",
        }.get(path.suffix.lower())
        if chosen is None:
            raise EvalkitInputError(
                f"cannot tell the table format from {path.name!r}; pass format= one of md, html, tex, csv, docx."
            )
        check_option("format", chosen, TableFormat)
        path.parent.mkdir(parents=True, exist_ok=True)
        if chosen == "docx":
            return self.to_docx(path)
        writer = {
            "md": self.to_markdown,
            "html": self.to_html,
            "tex": self.to_latex,
            "csv": self.to_csv,
        }[chosen]
        path.write_text(writer(), encoding="utf-8")
        return path

    def save_all(
        self,
        stem: str | Path,
        formats: tuple[TableFormat, ...] = ("md", "html", "tex", "csv", "docx"),
    ) -> list[Path]:
        """Write the table in several formats next to each other: ``stem.md``, ``stem.html``, ..."""
        stem = Path(stem)
        return [self.save(stem.with_suffix(f".{fmt}"), format=fmt) for fmt in formats]

    def __str__(self) -> str:
        return self.to_markdown()

    def _repr_html_(self) -> str:
        return self.to_html()
