"""Per-invocation state: the global ``--url``/``--token`` options and the SDK client."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

import typer

from plinth.cli._output import Output
from plinth.client import Client


@dataclass
class Settings:
    """What the root callback collected; ``None`` means "from the environment"."""

    url: str | None = None
    token: str | None = None
    client: Client | None = field(default=None, repr=False)


def get_client(ctx: typer.Context) -> Client:
    """The invocation's one :class:`Client`, created on first use and closed at exit."""
    root = ctx.find_root()
    settings = root.obj if isinstance(root.obj, Settings) else Settings()
    root.obj = settings
    if settings.client is None:
        settings.client = Client(settings.url, settings.token)
        root.call_on_close(settings.client.close)
    return settings.client


OutputOption = Annotated[
    Output,
    typer.Option("--output", "-o", help="Output format: a table for people, or JSON for scripts."),
]
