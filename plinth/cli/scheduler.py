"""``plinth scheduler simulate``: replay a trace through the production scheduler core
with a policy file, and compare two policies on the same trace.

The replay runs here, in the CLI process (``plinth.scheduler.simulation``, the same
function as ``benchmarks/scheduler_sim.py``); with ``--history`` the trace is the
server's recorded workloads (``GET /api/v1/queue/history``, admins).

A policy file is YAML; every key is optional::

    scheduler:                 # the server's ``scheduler:`` keys (docs/configuration.md)
      weights: {aging: 4, fair_share: 2}
      reclaim_after: 2h
    nodes:                     # replaces the trace's nodes
      - {name: n1, cpu: 64, memory: 256Gi, gpu: 8}
    groups:                    # replaces the trace's groups
      - {name: ads, quota: {cpu: 32, memory: 128Gi, gpu: 4}, borrow_limit: {cpu: 8}}

Without ``--config`` the policy is the scheduler's defaults.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from plinth.cli import _output as out
from plinth.cli._context import OutputOption, get_client
from plinth.cli._parse import InputError

app = typer.Typer(help="The quota scheduler: replay traces to compare policies.",
                  no_args_is_help=True)

_FIGURES = [
    ("utilization", "utilisation (mean of cpu, gpu)"),
    ("preemptions", "preemptions"),
    ("reclaims", "reclaims"),
    ("preemptions_per_reclaim", "preemptions per reclaim"),
    ("max_preemptions_of_a_victim_per_reclaim", "most preemptions of one victim per reclaim"),
    ("wasted_cpu_hours", "wasted cpu-hours"),
    ("wasted_gpu_hours", "wasted gpu-hours"),
    ("jain_index", "Jain's fairness index"),
    ("never_started", "never started"),
]


def _read_yaml(path: Path, option: str) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as e:
        raise InputError(f"{option}: cannot read {path}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise InputError(f"{option}: {path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise InputError(f"{option}: {path} must be a mapping with scheduler, nodes, groups")
    unknown = set(data) - {"scheduler", "nodes", "groups"}
    if unknown:
        raise InputError(f"{option}: {path}: unknown key {min(unknown)!r}; use scheduler,"
                         " nodes, groups")
    return data


def _policy(path: Path | None, option: str) -> tuple[str, Any, tuple | None, tuple | None]:
    """(name, scheduler config, nodes or None, groups or None) of a policy file."""
    from pydantic import ValidationError

    from plinth import scheduler as core
    from plinth.config import NodeConfig, SchedulerConfig
    from plinth.scheduler.tracefile import group_from_dict
    from plinth.units import parse_memory_mib

    if path is None:
        return "default", core.SchedulerConfig(), None, None
    data = _read_yaml(path, option)
    try:
        policy = SchedulerConfig.model_validate(data.get("scheduler") or {}).policy()
        nodes = None
        if data.get("nodes") is not None:
            nodes = tuple(
                core.Node(n.name, core.Resources(n.cpu, n.memory, n.gpu))
                for n in (NodeConfig.model_validate(x) for x in data["nodes"]))
        groups = None
        if data.get("groups") is not None:
            groups = tuple(group_from_dict(_mib(g, parse_memory_mib)) for g in data["groups"])
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise InputError(f"{option}: {path}: {where}: {first['msg']}") from None
    except (ValueError, TypeError) as e:
        raise InputError(f"{option}: {path}: {e}") from None
    return path.stem, policy, nodes, groups


def _mib(group: Any, parse: Any) -> Any:
    """A group of a policy file with its memory amounts (``32Gi``) in MiB."""
    if not isinstance(group, dict):
        return group
    out = dict(group)
    for key in ("quota", "borrow_limit", "lend_limit", "max_job"):
        q = out.get(key)
        if isinstance(q, dict) and isinstance(q.get("memory"), str):
            out[key] = {**q, "memory": parse(q["memory"])}
    return out


def _trace(ctx: typer.Context, trace: Path | None, history: str | None) -> Any:
    from plinth.scheduler.tracefile import TraceError, load_trace

    if (trace is None) == (history is None):
        raise InputError("give exactly one of --trace FILE or --history DURATION (e.g. 7d)")
    try:
        if trace is not None:
            try:
                lines = trace.read_text().splitlines()
            except OSError as e:
                raise InputError(f"--trace: cannot read {trace}: {e.strerror or e}") from None
        else:
            from plinth.services.units import parse_duration_s

            try:
                since = parse_duration_s(history)
            except ValueError as e:
                raise InputError(f"--history: {e}") from None
            rows = get_client(ctx).jobs.history(since_s=since)
            lines = [json.dumps(r) for r in rows]
        return load_trace(lines)
    except TraceError as e:
        raise InputError(f"--trace: {e}") from None


def _duration(value: str, option: str) -> float:
    from plinth.services.units import parse_duration_s

    try:
        return parse_duration_s(value, allow_zero=True)
    except ValueError as e:
        raise InputError(f"{option}: {e}") from None


@app.command("simulate")
def simulate(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option(
        "--config", help="Policy file (YAML: scheduler, nodes, groups); default: defaults.")] = None,
    trace: Annotated[Path | None, typer.Option(
        help="Trace to replay (JSONL; format in docs/scheduling.md).")] = None,
    history: Annotated[str | None, typer.Option(
        help="Replay the server's recorded workloads of this long ago until now, e.g. 7d"
             " (admins).")] = None,
    compare: Annotated[Path | None, typer.Option(
        help="A second policy file, replayed on the same trace, shown side by side.")] = None,
    tick: Annotated[str, typer.Option(
        help="Least simulated time between two cycles while work waits.")] = "60s",
    warmup: Annotated[str, typer.Option(
        help="Simulated time at the start not counted in utilisation.")] = "0",
    output: OutputOption = out.Output.table,
) -> None:
    """Replay a trace through the scheduler and print utilisation, preemptions (per
    reclaim), wasted work and p50/p95 wait per group; with --compare, both policies."""
    tick_s, warmup_s = _duration(tick, "--tick"), _duration(warmup, "--warmup")
    if tick_s <= 0:
        raise InputError("--tick must be more than 0 seconds")
    tr = _trace(ctx, trace, history)
    policies = [_policy(config, "--config")]
    if compare is not None:
        policies.append(_policy(compare, "--compare"))
    if len(policies) == 2 and policies[0][0] == policies[1][0]:
        policies[1] = (policies[1][0] + "-compare", *policies[1][1:])
    from plinth.scheduler.simulation import simulate as replay

    results: dict[str, dict[str, Any]] = {}
    for name, policy, nodes, groups in policies:
        nodes = nodes if nodes is not None else tr.nodes
        groups = groups if groups is not None else tr.groups
        if not nodes or not groups:
            raise InputError(f"{name}: no cluster: the trace has no cluster line and the"
                             " policy file gives no nodes and groups")
        figures = replay(tr.items, nodes, groups, policy, tick_s, warmup_s)
        figures.pop("_waits")
        results[name] = figures
    if output is out.Output.json:
        out.print_json({"workloads": len(tr.items), "tick_s": tick_s, "warmup_s": warmup_s,
                        "policies": results})
        return
    from plinth.scheduler.cycle import format_duration

    names = list(results)
    rows = [[label, *(str(results[n][key]) for n in names)] for key, label in _FIGURES]
    groups_seen = sorted({g for r in results.values() for g in r["wait_p50_s"]})
    for g in groups_seen:
        rows.append([f"wait p50 / p95, group {g}",
                     *(f"{format_duration(results[n]['wait_p50_s'].get(g, 0))} / "
                       f"{format_duration(results[n]['wait_p95_s'].get(g, 0))}" for n in names)])
    out.print_table(["FIGURE", *[n.upper() for n in names]], rows)
