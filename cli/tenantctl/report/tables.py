"""Tables that stay readable at any width and when piped: names are never cut to "clien…".

When a table's natural width fits the console it is printed as a compact table, one line per row.
When it does not (an 80-column terminal, many columns), it is printed as records: the first column as
a heading, then one ``column  value`` line per field, so every value is whole and greppable. Piped
(not a terminal, no $COLUMNS) the console is wide (``cli/console.py``), so tables stay tables.
Every table tenantctl prints goes through ``print_table``.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich import box
from rich.console import Console
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

_PADDING = 2  # a column's cell padding (one space each side) in the compact table


def print_table(console: Console, columns: Sequence[str], rows: Sequence[Sequence[str]], *,
                title: str | None = None, markup: bool = False) -> None:
    cells = [[Text.from_markup(cell) if markup else Text(cell) for cell in row] for row in rows]
    widths = [max([len(name)] + [_width(row[i]) for row in cells]) for i, name in enumerate(columns)]
    if sum(widths) + _PADDING * len(columns) + len(columns) + 1 <= console.width:
        table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        for name in columns:
            table.add_column(name, no_wrap=True)
        for row in cells:
            table.add_row(*row)
        console.print(table)
        return
    if title:
        console.print(Text(title, style="bold"))
    label = max(len(name) for name in columns[1:]) if len(columns) > 1 else 0
    for row in cells:
        if row[0].plain:  # a blank first cell continues the record above (e.g. a tenant's next change)
            console.print(Text.assemble(row[0].copy(), style="bold"))
        for name, cell in zip(columns[1:], row[1:], strict=True):
            _print_field(console, f"  {name:<{label}}  ", cell)


def _print_field(console: Console, prefix: str, cell: Text) -> None:
    """``prefix`` then the value; a value too long for the rest of the line goes below it, indented and
    wrapped at spaces (a single token longer than the terminal is never cut, only wrapped)."""
    lines = cell.split("\n") if cell.plain else [Text("")]
    if all(len(prefix) + line.cell_len <= console.width for line in lines):
        console.print(Text.assemble(prefix, lines[0]), soft_wrap=True)
        for more in lines[1:]:
            console.print(Text.assemble(" " * len(prefix), more), soft_wrap=True)
        return
    console.print(Text(prefix.rstrip()), soft_wrap=True)
    for line in lines:
        console.print(Padding(line, (0, 0, 0, 4)))


def _width(text: Text) -> int:
    return max((line.cell_len for line in text.split("\n")), default=0)
