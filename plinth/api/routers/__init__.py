"""One APIRouter per resource; ``ALL`` is what the app factory includes."""

from plinth.api.routers import (
    files,
    groups,
    jobs,
    models,
    nodes,
    queue,
    quotas,
    reservations,
    system,
    users,
)

ALL = [
    system.router,
    system.identity,
    groups.router,
    users.router,
    nodes.router,
    files.router,
    jobs.router,
    quotas.router,
    reservations.router,
    queue.router,
    models.router,
]

__all__ = ["ALL"]
