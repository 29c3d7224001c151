"""A formatted table and its renderings: DataFrame, Markdown, HTML, LaTeX, CSV, Word."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from evalkit.core import EvalkitInputError, TableFormat, check_option
from evalkit.tables._format import ascii_text

_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "|": r"\textbar{}", "<": r"\textless{}", ">": r"\textgreater{}", "\u200b": "",
    "\u00a0": "~", "−": "$-$", "–": "--", "—": "---", "∞": r"$\infty$", "²": r"\textsuperscript{2}",
    "³": r"\textsuperscript{3}", "×": r"$\times$", "·": r"$\cdot$", "±": r"$\pm$",
    "≥": r"$\geq$", "≤": r"$\leq$", "≈": r"$\approx$", "α": r"$\alpha$", "β": r"$\beta$",
    "γ": r"$\gamma$", "δ": r"$\delta$", "η": r"$\eta$", "θ": r"$\theta$", "λ": r"$\lambda$",
    "μ": r"$\mu$", "ρ": r"$\rho$", "σ": r"$\sigma$", "τ": r"$\tau$", "φ": r"$\phi$",
    "χ": r"$\chi$", "ω": r"$\omega$", "Σ": r"$\Sigma$", "Δ": r"$\Delta$", "Φ": r"$\Phi$",
    "Ω": r"$\Omega$", "π": r"$\pi$", "ε": r"$\varepsilon$", "ν": r"$\nu$", "ψ": r"$\psi$", "‘": "`", "’": "'",
    "“": "``", "”": "''", "→": r"$\rightarrow$",
}  # fmt: skip
"""Every character with a meaning in LaTeX, and every non-ASCII symbol evalkit writes,
with its LaTeX spelling (text mode, needing no package beyond booktabs)."""

_HTML_STYLE = (
    "body{font-family:serif;margin:2em}"
    "table.evalkit-table{border-collapse:collapse;border-top:2px solid #000;"
    "border-bottom:2px solid #000}"
    "table.evalkit-table caption{text-align:left;font-style:italic;padding-bottom:.4em}"
    "table.evalkit-table thead th{border-bottom:1px solid #000}"
    "table.evalkit-table th,table.evalkit-table td{padding:.2em .8em;text-align:center}"
    "table.evalkit-table td:first-child,table.evalkit-table th:first-child{text-align:left}"
    "table.evalkit-table tfoot td{text-align:left;font-size:.9em;padding-top:.4em}"
)


def latex_escape(text: str) -> str:
    """Escape every LaTeX special character in ``text`` (and spell out the symbols
    evalkit writes: minus signs, Greek letters, superscripts, ∞)."""
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
        Sentences printed under the table (``Note.`` in APA style); each appears once.
    data
        The unformatted numbers, for users who want to compute with them; the CSV
        export writes these (ASCII, plain minus signs).
    """

    body: pd.DataFrame
    title: str = ""
    notes: tuple[str, ...] = ()
    data: pd.DataFrame = field(default_factory=pd.DataFrame)
    stub_header: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "notes", tuple(dict.fromkeys(self.notes)))

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

    def to_html_fragment(self) -> str:
        """The ``<table>`` element alone (caption, header, body, notes footer), for
        embedding in a page or a notebook."""
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

    def to_html(self) -> str:
        """A complete HTML document (UTF-8 declared, APA-style rules) holding the table."""
        title = html.escape(self.title or "evalkit table")
        return (
            '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{title}</title>\n<style>{_HTML_STYLE}</style>\n</head>\n<body>\n"
            f"{self.to_html_fragment()}</body>\n</html>\n"
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

    def to_csv(self, *, formatted: bool = False) -> str:
        """The numbers behind the table as ASCII CSV (``formatted=True``: the formatted
        cells instead, made ASCII). Title and notes are not part of CSV."""
        frame = self.to_frame() if formatted or self.data.empty else self._numbers()
        frame = frame.rename(columns=lambda c: ascii_text(str(c)))
        for column in frame.columns:
            if frame[column].dtype == object or pd.api.types.is_string_dtype(frame[column]):
                frame[column] = frame[column].map(
                    lambda v: ascii_text(v) if isinstance(v, str) else v
                )
        return str(frame.to_csv(index=False))

    def _numbers(self) -> pd.DataFrame:
        data = self.data.copy()
        if isinstance(data.index, pd.RangeIndex):
            return data
        data.index = [ascii_text(str(label)) for label in data.index]
        data.index.name = self.stub_header or "row"
        return data.reset_index()

    def to_docx(self, path: str | Path) -> Path:
        """Write a Word document holding the table (APA rules: lines above and below
        the header and at the bottom, no vertical lines), its title and its notes."""
        from docx import Document
        from docx.shared import Pt

        frame = self.to_frame()
        document = Document()
        if self.title:
            title = document.add_paragraph()
            title.add_run(self.title).bold = True
        table = document.add_table(rows=len(frame) + 1, cols=len(frame.columns))
        for j, name in enumerate(frame.columns):
            table.cell(0, j).text = str(name)
        for i, values in enumerate(frame.itertuples(index=False), start=1):
            for j, value in enumerate(values):
                table.cell(i, j).text = str(value)
        _apa_rules(table)
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
        return self.to_html_fragment()


def _apa_rules(table: object) -> None:
    """Borders of an APA table in Word: a rule above the table, one under the header
    row and one under the last row; nothing vertical and nothing between body rows."""
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn

    def borders(element: object, tag: str, sides: dict[str, str]) -> None:
        """Add a border element; in the table's properties it goes before the look
        settings, where the schema puts it."""
        node = OxmlElement(tag)
        for side, value in sides.items():
            edge = OxmlElement(f"w:{side}")
            edge.set(qn("w:val"), value)
            if value != "nil":
                edge.set(qn("w:sz"), "8")
                edge.set(qn("w:space"), "0")
                edge.set(qn("w:color"), "000000")
            node.append(edge)
        look = element.find(qn("w:tblLook"))  # type: ignore[attr-defined]
        if look is not None:
            look.addprevious(node)
        else:
            element.append(node)  # type: ignore[attr-defined]

    properties = table._tbl.tblPr  # type: ignore[attr-defined]
    sides = {"top": "single", "left": "nil", "bottom": "single", "right": "nil"}
    borders(properties, "w:tblBorders", {**sides, "insideH": "nil", "insideV": "nil"})
    rows = table.rows  # type: ignore[attr-defined]
    for cell in rows[0].cells:
        borders(cell._tc.get_or_add_tcPr(), "w:tcBorders", {"bottom": "single"})
