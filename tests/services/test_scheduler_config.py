"""The ``scheduler:`` and ``code:`` sections of the server configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from plinth.config import ConfigError, load_config
from plinth.scheduler import Ordering, SchedulerConfig


def _load(tmp_path: Path, text: str):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return load_config(p)


def test_defaults_are_the_cores() -> None:
    cfg = load_config(None)
    assert cfg.scheduler.policy() == SchedulerConfig()
    assert cfg.scheduler.poll_interval == 0.25 and cfg.code.git_local_roots == []
    assert cfg.scheduler.priority_names == ("low", "normal", "high")


def test_every_key_reaches_the_core_with_durations_parsed(tmp_path: Path) -> None:
    cfg = _load(
        tmp_path,
        """
scheduler:
  poll_interval: 0.1
  weights: {aging: 2, fair_share: 3}
  aging_saturation: 2h
  runtime_reference: 2d
  size_reference: 0.1
  fair_share_half_life: 12h
  priority_classes: {batch: 0.1, urgent: 0.9}
  default_priority: 0.2
  reclaim_grace: 45s
  reclaim_after: 5m
  max_admissions_per_cycle: 10
  borrow_max_runtime: 4h
  cpu_work_on_gpu_nodes: true
  ordering: fifo
  borrowing: false
  fair_borrowing: false
  reclaim: false
  reclaim_least_lost_first: true
  backfill: false
  placement: first_fit
code:
  git_local_roots: [/srv/git]
""",
    )
    p = cfg.scheduler.policy()
    assert cfg.scheduler.poll_interval == 0.1
    assert (p.weights.aging, p.weights.fair_share, p.weights.runtime) == (2, 3, 1)
    assert p.aging_saturation_s == 7200 and p.runtime_reference_s == 2 * 86400
    assert p.fair_share_half_life_s == 43200 and p.reclaim_grace_s == 45
    assert p.reclaim_after_s == 300 and p.borrow_max_runtime_s == 4 * 3600
    assert p.reclaim_least_lost_first
    assert p.size_reference == 0.1 and p.default_priority == 0.2
    assert dict(p.priority_classes) == {"batch": 0.1, "urgent": 0.9}
    assert p.max_admissions_per_cycle == 10 and p.cpu_work_on_gpu_nodes
    assert p.ordering is Ordering.FIFO and not (p.borrowing or p.reclaim or p.backfill)
    assert not p.fair_borrowing and p.placement.value == "first_fit"
    assert cfg.scheduler.priority_names == ("batch", "urgent")
    assert cfg.code.git_local_roots == ["/srv/git"]


@pytest.mark.parametrize(
    ("text", "msg"),
    [
        ("scheduler: {weights: {agin: 1}}", "unknown score weight 'agin'"),
        ("scheduler: {aging_saturation: -1}", "aging_saturation"),
        ("scheduler: {reclaim_grace: soon}", "reclaim_grace"),
        ("scheduler: {ordering: random}", "scheduler"),
        ("scheduler: {size_reference: 2}", "size_reference must be in (0, 1]"),
        ("scheduler: {priority_classes: {vip: 3}}", "priority class 'vip'"),
        ("scheduler: {aging: 1}", "scheduler.aging"),
        ("code: {git_local_root: [/x]}", "code.git_local_root"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, text: str, msg: str) -> None:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, text)
    assert msg in str(info.value)


def test_reclaim_after_may_be_zero_but_not_negative() -> None:
    from plinth.config import ServerConfig

    assert ServerConfig.model_validate({"scheduler": {"reclaim_after": 0}}).scheduler.policy().reclaim_after_s == 0
    with pytest.raises(ValueError, match="non-negative"):
        ServerConfig.model_validate({"scheduler": {"reclaim_after": -1}})
