"""What every request handler shares: the database, config, home, and control loop."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plinth.config import ServerConfig
from plinth.services.auth import PrincipalCache
from plinth.services.control_loop import ControlLoop
from plinth.store.db import Database

__all__ = ["AppContext"]


@dataclass
class AppContext:
    db: Database
    cfg: ServerConfig
    home: Path
    loop: ControlLoop
    admin_token: str | None = None  # set only when this start created the admin
    principals: PrincipalCache = field(default_factory=PrincipalCache)
    #: The notebook monitor (services.notebook_monitor), set by background_services.
    notebooks: Any = None
