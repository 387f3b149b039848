"""Keeping a run stable: the learning-rate warm-up and the divergence guard (pure logic).

* :func:`warmup_scale`: the factor every learning rate (dense optimizer and tables) is
  multiplied by at a step — a linear ramp from ``1 / warmup_steps`` to 1, so the first
  updates of fresh rows (Adagrad and Adam move a new coordinate by about the full rate
  whatever its gradient) cannot throw embeddings far from the calibrated start.
* :class:`DivergenceGuard`: fed each step's mean loss *before* the update is applied; it
  reports a reason to stop when the loss is not finite, or when its moving average
  exceeds ``explode_factor`` times the base-rate loss (the log loss of always predicting
  the base rate — where a calibrated start begins, and what any learning model beats).
  The trainer then stops without applying that step or writing a checkpoint, so the last
  checkpoint on disk is one written before the divergence.
* :func:`base_rate_logloss`: that reference loss, in nats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["DivergenceGuard", "base_rate_logloss", "warmup_scale"]


def warmup_scale(step: int, warmup_steps: int) -> float:
    """Learning-rate factor for 0-based ``step``: ``(step + 1) / warmup_steps``, capped at 1."""
    if warmup_steps <= 0:
        return 1.0
    return min(1.0, (step + 1) / warmup_steps)


def base_rate_logloss(p: float | None) -> float:
    """Log loss (nats) of predicting the constant ``p`` on data whose positive rate is ``p``."""
    if p is None or not 0.0 < p < 1.0:
        return math.log(2.0)
    return -(p * math.log(p) + (1.0 - p) * math.log(1.0 - p))


@dataclass
class DivergenceGuard:
    """Watches the training loss; :meth:`check` returns why to stop, or None.

    ``reference``: the base-rate loss; ``explode_factor``: how many times it the moving
    average may reach; ``min_steps``: steps seen before the average is judged (a single
    batch of a low positive rate is noisy); ``decay``: the average's weight on the past.
    """

    reference: float
    explode_factor: float = 3.0
    min_steps: int = 20
    decay: float = 0.9
    seen: int = 0
    average: float | None = field(default=None)

    def check(self, loss: float) -> str | None:
        """Account for one step's loss; a reason string when the run must stop."""
        if not math.isfinite(loss):
            return f"the loss became {loss}"
        self.seen += 1
        self.average = loss if self.average is None else (
            self.decay * self.average + (1.0 - self.decay) * loss)
        limit = self.explode_factor * self.reference
        if self.seen >= self.min_steps and self.average > limit:
            return (f"the loss exploded: its moving average {self.average:.4g} is over "
                    f"{self.explode_factor:g}x the base-rate loss {self.reference:.4g}")
        return None
