"""The ``distributed:`` section of a training config (see docs/distributed.md).

Only ``python -m plinth.train.distributed`` (and the shards, for the message limit and
the metrics interval) read it; ``plinth train local`` accepts and ignores it, so one
config file serves both.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DistributedConfig"]


class DistributedConfig(BaseModel):
    """How workers talk to the parameter-server shards and to each other."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    staleness: int = Field(
        2, ge=0, le=64,
        description="pushes of sparse gradients a worker may have in flight (unapplied) "
                    "when it reads rows; 0 = every push is applied before the next step")
    prefetch: bool = Field(True, description="pull the next batch's rows while a step runs")
    checkpoint_every_minutes: float | None = Field(
        None, gt=0, description="also checkpoint when this much time passed since the last "
                                "one (besides checkpoint.every_steps)")
    request_timeout_s: float = Field(120.0, gt=0, description="a shard silent this long is dead")
    collective_timeout_s: float = Field(300.0, gt=0, description="torch.distributed timeout")
    max_message_mb: float = Field(256.0, gt=0, le=2048, description="largest PS message")
    metrics_every_steps: int = Field(20, ge=1, description="how often workers report")
    metrics_every_s: float = Field(10.0, gt=0, description="how often shards report")
    auc_window_batches: int = Field(
        8, ge=1, description="held-out AUC: predictions of the last N batches, each made "
                             "before training on it (progressive validation)")
