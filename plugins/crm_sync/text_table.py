"""Fixed-width text tables for task logs and the demo: one header line, a rule, one line per row."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Column:
    """One column: its title, width and alignment (``<`` left, ``>`` right), and how a row gives its cell.

    ``value``: a row's key, or a function of the row. ``spec``: a format spec after the width (e.g. ``.2f``).
    A cell wider than the column is printed whole (the caller cuts text that must fit).
    """

    title: str
    width: int
    align: str = ">"
    value: str | Callable[[Any], Any] | None = None
    spec: str = ""

    def cell(self, row: Any) -> str:
        getter = self.value if self.value is not None else self.title
        value = getter(row) if callable(getter) else row[getter]
        return f"{value:{self.align}{self.width}{self.spec}}"

    def heading(self) -> str:
        return f"{self.title:{self.align}{self.width}}"


def render(columns: Sequence[Column], rows: Iterable[Any], *, rule: bool = True) -> list[str]:
    """The table's lines: the titles, a rule of ``-`` as long as the title line (unless ``rule`` is false),
    then one line per row; cells are separated by one space."""
    header = " ".join(c.heading() for c in columns)
    lines = [header, "-" * len(header)] if rule else [header]
    lines.extend(" ".join(c.cell(row) for c in columns) for row in rows)
    return lines
