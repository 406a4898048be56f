"""A formatted table and its renderings: Markdown, LaTeX (booktabs) and a standalone HTML page."""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape as escape_html

import numpy as np

PASS_MARK, SOFT_MARK = "†", "‡"
LATEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "_": r"\_",
    "#": r"\#",
    "$": r"\$",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\^{}",
    "±": r"$\pm$",
    "≤": r"$\leq$",
    "<": r"$<$",
    ">": r"$>$",
    "α": r"$\alpha$",
    "−": "--",
    "†": r"\dag{}",
    "‡": r"\ddag{}",
}


@dataclass
class Table:
    """A formatted table: cells are strings; ``bold`` and ``marks`` decorate them per output format."""

    name: str
    title: str
    header: list[str]
    rows: list[list[str]]
    bold: set[tuple[int, int]] = field(default_factory=set)
    marks: dict[tuple[int, int], str] = field(default_factory=dict)
    protocol: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        lines = [f"### {self.title}", "", "| " + " | ".join(self.header) + " |"]
        lines.append("|" + "|".join(["---"] + ["---:"] * (len(self.header) - 1)) + "|")
        for i, row in enumerate(self.rows):
            cells = []
            for j, text in enumerate(row):
                text = f"**{text}**" if (i, j) in self.bold else text
                cells.append(text + self.marks.get((i, j), ""))
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", *(f"- {line}" for line in self.protocol)]
        return "\n".join(lines) + "\n"

    def latex(self) -> str:
        def escape(text: str) -> str:
            return "".join(LATEX_ESCAPES.get(char, char) for char in text)

        marks = {PASS_MARK: r"\textsuperscript{\dag}", SOFT_MARK: r"\textsuperscript{\ddag}"}
        lines = [
            r"\begin{table}[t]",
            r"\centering",
            r"\small",
            f"\\caption{{{escape(self.title)}}}",
            f"\\label{{tab:{self.name}}}",
            r"\begin{tabular}{l" + "r" * (len(self.header) - 1) + "}",
            r"\toprule",
            " & ".join(escape(h) for h in self.header) + r" \\",
            r"\midrule",
        ]
        for i, row in enumerate(self.rows):
            cells = []
            for j, text in enumerate(row):
                text = escape(text)
                text = f"\\textbf{{{text}}}" if (i, j) in self.bold else text
                cells.append(text + marks.get(self.marks.get((i, j), ""), ""))
            lines.append(" & ".join(cells) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}"]
        if self.protocol:
            lines += [r"\par\smallskip\footnotesize", *(escape(line) + r"\\" for line in self.protocol)]
        lines.append(r"\end{table}")
        return "\n".join(lines) + "\n"

    def html(self) -> str:
        """A standalone page: the Snakemake report shows it as the table's result."""
        header = "".join(f"<th>{escape_html(h)}</th>" for h in self.header)
        body = []
        for i, row in enumerate(self.rows):
            cells = []
            for j, text in enumerate(row):
                text = escape_html(text)
                text = f"<b>{text}</b>" if (i, j) in self.bold else text
                cells.append(f"<td>{text}{self.marks.get((i, j), '')}</td>")
            body.append("<tr>" + "".join(cells) + "</tr>")
        protocol = "".join(f"<li>{escape_html(line)}</li>" for line in self.protocol)
        return (
            "<!DOCTYPE html><html><head><meta charset='utf-8'>"
            f"<title>{escape_html(self.title)}</title>"
            "<style>body{font-family:sans-serif}table{border-collapse:collapse}"
            "th,td{padding:2px 8px;border-bottom:1px solid #ccc}td:not(:first-child){text-align:right}</style>"
            f"</head><body><h3>{escape_html(self.title)}</h3><table><thead><tr>{header}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table><ul>{protocol}</ul></body></html>\n"
        )


def percent(mean: float, std: float | None = None) -> str:
    if mean is None or np.isnan(mean):
        return "–"
    return f"{100 * mean:.1f}" if std is None or np.isnan(std) else f"{100 * mean:.1f} ± {100 * std:.1f}"
