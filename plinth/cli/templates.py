"""``plinth template ...``: publish and read templates (presets); see docs/templates.md."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from plinth.cli import _output as out
from plinth.cli._context import OutputOption, get_client
from plinth.cli._parse import InputError
from plinth.cli._spec import load_spec
from plinth.client import ValidationError

app = typer.Typer(
    help="Templates (presets): named, versioned, parameterised job specs.", no_args_is_help=True
)

Name = Annotated[str, typer.Argument(help="Template name (from `plinth template list`).")]


def _owner(t: dict[str, Any]) -> str:
    return str(t.get("group") or "platform")


def _yaml(value: Any) -> str:
    import yaml

    return yaml.safe_dump(value, sort_keys=False, default_flow_style=False).rstrip()


@app.command()
def create(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(metavar="TEMPLATE.yaml", help="Template document.")],
    output: OutputOption = out.Output.table,
) -> None:
    """Publish a template: a new name gets version 1, an existing one its next version.

    Versions never change; publishing the latest version's content again adds nothing.
    """
    document = load_spec(file)
    try:
        t = get_client(ctx).templates.publish(document)
    except ValidationError as exc:
        raise InputError(f"the server rejected template {str(file)!r}: {exc.message}") from None
    if output is out.Output.json:
        out.print_json(t)
        return
    what = "Published" if t.get("created") else "Unchanged (same as the latest version):"
    out.print_line(f"{what} template {t.get('name')} version {t.get('version')} ({_owner(t)}).")


@app.command("list")
def list_(ctx: typer.Context, output: OutputOption = out.Output.table) -> None:
    """List the templates you may use (the platform's and your group's)."""
    items = get_client(ctx).templates.list()
    if output is out.Output.json:
        out.print_json(items)
        return
    out.print_table(
        ["NAME", "VERSION", "OWNER", "UPDATED", "DESCRIPTION"],
        [
            [out.escape(t.get("name")), t.get("version"), out.escape(_owner(t)),
             out.fmt_time(t.get("updated_at")), out.escape(str(t.get("description", ""))[:80])]
            for t in items
        ],
    )  # fmt: skip


def _default(p: dict[str, Any], presets: dict[str, Any]) -> Any:
    """The value a parameter has before the submit: its layer presets, else its default."""
    for layer in ("engineering", "platform"):
        if p["name"] in (presets.get(layer) or {}):
            return f"{presets[layer][p['name']]} ({layer} preset)"
    return p.get("default")


def _bounds(p: dict[str, Any]) -> str:
    if p.get("allowed"):
        return " | ".join(map(str, p["allowed"]))
    lo, hi = p.get("min"), p.get("max")
    if lo is None and hi is None:
        return ""
    return f"{'' if lo is None else f'{lo:g}'}..{'' if hi is None else f'{hi:g}'}"


@app.command()
def show(
    ctx: typer.Context,
    name: Name,
    version: Annotated[
        int | None, typer.Option("--version", "-v", min=1, help="This version [default: latest].")
    ] = None,
    output: OutputOption = out.Output.table,
) -> None:
    """Show a template: its parameters (type, value before submit, bounds, who sets it),
    presets and spec."""
    t = get_client(ctx).templates.get(name, version)
    if output is out.Output.json:
        out.print_json(t)
        return
    out.print_fields([
        ("name", out.escape(t.get("name"))),
        ("version", f"{t.get('version')} of {t.get('latest_version')}"),
        ("owner", out.escape(_owner(t))),
        ("description", out.escape(t.get("description"))),
        ("published", f"{out.fmt_time(t.get('created_at'))} by {t.get('created_by')}"),
    ])  # fmt: skip
    presets = t.get("presets") or {}
    params = t.get("parameters") or []
    out.print_table(
        ["PARAMETER", "TYPE", "VALUE", "ALLOWED", "SET BY", "DESCRIPTION"],
        [
            [out.escape(p.get("name")), p.get("type"),
             out.escape("(required)" if p.get("default") is None and _required(p, presets)
                        else _default(p, presets)),
             out.escape(_bounds(p)), _set_by(p.get("layer", "algorithm")),
             out.escape(p.get("description"))]
            for p in params
        ],
    )  # fmt: skip
    out.print_line("spec:")
    out.print_line(_yaml(t.get("spec")))


def _required(p: dict[str, Any], presets: dict[str, Any]) -> bool:
    set_by_preset = any(p["name"] in (presets.get(k) or {}) for k in ("platform", "engineering"))
    required = p.get("required")
    return not set_by_preset and (required if required is not None else True)


def _set_by(layer: str) -> str:
    return {"platform": "platform", "engineering": "engineering",
            "algorithm": "submit"}.get(layer, layer)  # fmt: skip


@app.command()
def versions(ctx: typer.Context, name: Name, output: OutputOption = out.Output.table) -> None:
    """List every version of a template, oldest first (versions never change)."""
    items = get_client(ctx).templates.versions(name)
    if output is out.Output.json:
        out.print_json(items)
        return
    out.print_table(
        ["VERSION", "PUBLISHED", "BY", "DESCRIPTION"],
        [
            [t.get("version"), out.fmt_time(t.get("created_at")), out.escape(t.get("created_by")),
             out.escape(str(t.get("description", ""))[:80])]
            for t in items
        ],
    )  # fmt: skip
