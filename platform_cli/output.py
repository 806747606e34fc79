"""Printing results: aligned tables for people, JSON for scripts.

Lists print one JSON object a line under ``--json`` so they stream into ``jq`` and
friends; single objects print as one JSON object.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import click


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def table(
    rows: Iterable[Mapping[str, Any]], columns: Sequence[str], *, as_json: bool, empty: str = ""
) -> None:
    rows = list(rows)
    if as_json:
        for row in rows:
            click.echo(json.dumps(dict(row), sort_keys=True, default=str))
        return
    if not rows:
        if empty:
            click.echo(empty, err=True)
        return
    cells = [[_text(row.get(column)) for column in columns] for row in rows]
    widths = [max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(columns)]
    click.echo(
        "  ".join(column.upper().ljust(width) for column, width in zip(columns, widths, strict=True)).rstrip()
    )
    for line in cells:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())


def record(obj: Mapping[str, Any], *, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(dict(obj), sort_keys=True, default=str))
        return
    width = max((len(key) for key in obj), default=0)
    for key, value in obj.items():
        if isinstance(value, (dict, list)):
            value = json.dumps(value, sort_keys=True)
        click.echo(f"{key.ljust(width)}  {_text(value)}")
