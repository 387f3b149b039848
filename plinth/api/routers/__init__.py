"""One APIRouter per resource; ``ALL`` is what the app factory includes."""

from plinth.api.routers import (
    admin,
    audit,
    deployments,
    files,
    groups,
    job_metrics,
    jobs,
    models,
    nodes,
    notebooks,
    queue,
    quotas,
    reservations,
    system,
    templates,
    tokens,
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
    job_metrics.router,
    templates.router,
    quotas.router,
    reservations.router,
    queue.router,
    tokens.router,
    audit.router,
    admin.router,
    models.router,
    notebooks.router,
    deployments.router,
]

__all__ = ["ALL"]
