"""``plinth node ...``: the executor's nodes."""

from __future__ import annotations

import typer

from plinth.cli import _output as out
from plinth.cli._context import OutputOption, get_client

app = typer.Typer(help="Nodes: capacity and what is in use.", no_args_is_help=True)


@app.command("list")
def list_(ctx: typer.Context, output: OutputOption = out.Output.table) -> None:
    """List nodes with their capacity and resources in use."""
    nodes = get_client(ctx).nodes.list()
    if output is out.Output.json:
        out.print_json(nodes)
        return
    out.print_table(
        ["NAME", "CAPACITY", "USED"],
        [
            [
                out.escape(n.get("name")),
                out.fmt_resources(n.get("capacity")),
                out.fmt_resources(n.get("used")),
            ]
            for n in nodes
        ],
    )
