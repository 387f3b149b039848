"""``plinth job ...``: submit, inspect, follow and control jobs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from plinth.cli import _output as out
from plinth.cli._context import OutputOption, get_client
from plinth.cli._parse import InputError, parse_params
from plinth.cli._spec import load_spec, prepare_spec, template_ref
from plinth.client import Client, LogLine, NotFoundError, ValidationError

app = typer.Typer(
    help="Jobs: submit, list, get, logs, events, cancel, rerun, wait.", no_args_is_help=True
)

JobId = Annotated[str, typer.Argument(help="Job id (from `plinth job list`).")]
WaitOption = Annotated[
    bool, typer.Option("--wait", help="Wait for the end; exit 0 only if the job succeeded.")
]
FollowOption = Annotated[
    bool,
    typer.Option(
        "--follow", "-f", help="Stream every replica's log until the end (implies --wait)."
    ),
]


# ---- rendering ---------------------------------------------------------------------------


def _roles_summary(job: dict[str, Any]) -> str:
    roles = (job.get("spec") or {}).get("roles") or {}
    if not isinstance(roles, dict):
        return "-"
    return " ".join(f"{name}:{(r or {}).get('replicas', '?')}" for name, r in roles.items()) or "-"


def _code_summary(code: Any) -> str:
    if not code:
        return "-"
    if code.get("kind") == "git":
        commit = str(code.get("commit") or "?")[:12]
        return f"git {code.get('url')} {code.get('ref')} @ {commit}"
    if code.get("kind") == "file":
        return f"upload sha256:{str(code.get('sha256'))[:12]}"
    return str(code)


def show_job(job: dict[str, Any], output: out.Output) -> None:
    if output is out.Output.json:
        out.print_json(job)
        return
    out.print_fields(
        [
            ("id", out.escape(job.get("id"))),
            ("name", out.escape(job.get("name"))),
            ("state", out.styled_state(job.get("state"))),
            ("reason", out.escape(job.get("reason"))),
            ("group", out.escape(job.get("group"))),
            ("user", out.escape(job.get("user"))),
            ("roles", out.escape(_roles_summary(job))),
            ("template", out.escape(_template_summary(job.get("template")))),
            ("code", out.escape(_code_summary(job.get("code")))),
            ("attempt", job.get("attempt")),
            ("retries", job.get("retries")),
            ("max runtime", out.fmt_duration(job.get("max_runtime"))),
            ("created", out.fmt_time(job.get("created_at"))),
            ("started", out.fmt_time(job.get("started_at"))),
            ("finished", out.fmt_time(job.get("finished_at"))),
        ]
    )
    if job.get("template"):
        import yaml

        out.print_line("spec (expanded from the template):")
        out.print_line(yaml.safe_dump(job.get("spec"), sort_keys=False).rstrip())


def _template_summary(t: Any) -> str | None:
    if not t:
        return None
    given = ", ".join(f"{k}={v}" for k, v in (t.get("params") or {}).items())
    return f"{t.get('name')} v{t.get('version')} ({given})"


def _stream_label(role: str, replica: int, attempt: int) -> str:
    # Attempt 0 is the usual case; later attempts (retries) are marked on every line.
    return f"[{role}-{replica}]" if attempt == 0 else f"[{role}-{replica} attempt {attempt}]"


def _print_log_line(line: LogLine, *, prefixed: bool, to_stderr: bool = False) -> None:
    text = line.text
    if prefixed:
        text = f"{_stream_label(line.role, line.replica, line.attempt)} {text}"
    if to_stderr:
        print(text, file=sys.stderr, flush=True)
    else:
        out.print_line(text)


def _finish(
    client: Client,
    job_id: str,
    output: out.Output,
    *,
    follow: bool,
    timeout: float | None = None,
) -> None:
    """Wait for the end (streaming logs when ``follow``), print the job, exit by its state.
    With ``timeout`` the wait raises WaitTimeoutError (exit 1) after that many seconds."""
    try:
        if follow:
            # With -o json the logs go to stderr so stdout stays one JSON document.
            for line in client.jobs.follow_logs(job_id):
                _print_log_line(line, prefixed=True, to_stderr=output is out.Output.json)
        job = dict(client.jobs.wait(job_id, timeout=timeout))
    except KeyboardInterrupt:
        _detached(job_id)
    if output is out.Output.json:
        out.print_json(job)
    else:
        reason = f" ({job.get('reason')})" if job.get("reason") else ""
        style = "green" if job.get("state") == "succeeded" else "red"
        out.stdout().print(
            f"Job {out.escape(job.get('id'))} {out.escape(job.get('name'))}: "
            f"[{style}]{job.get('state')}[/{style}]{out.escape(reason)}"
        )
    if job.get("state") != "succeeded":
        raise typer.Exit(1)


def _detached(job_id: str) -> NoReturn:
    """Ctrl-C while following or waiting: the job is the server's, it keeps going."""
    out.note(f"\nStopped watching; job {job_id} keeps running (`plinth job cancel {job_id}`).")
    raise typer.Exit(130)


def _submitted(job: dict[str, Any], output: out.Output, *, waiting: bool) -> None:
    if output is out.Output.json and not waiting:
        out.print_json(job)
    elif output is out.Output.table:
        out.note(f"Submitted job {job.get('id')} ({job.get('name')}), {job.get('state')}.")
        if not waiting:
            out.print_line(str(job.get("id")))


# ---- commands ----------------------------------------------------------------------------


@app.command()
def submit(
    ctx: typer.Context,
    spec_file: Annotated[
        Path | None,
        typer.Argument(metavar="[SPEC.yaml]", help="Job spec (YAML); optional with --template."),
    ] = None,
    template: Annotated[
        str | None,
        typer.Option(
            "--template",
            "-t",
            metavar="NAME[@VERSION]",
            help="Expand this template (see `plinth template show NAME`) with the --param values.",
        ),
    ] = None,
    code: Annotated[
        Path | None, typer.Option("--code", help="Upload this directory as the job's code.")
    ] = None,
    git: Annotated[
        str | None, typer.Option("--git", help="Run code from this git URL or local repository.")
    ] = None,
    ref: Annotated[
        str | None, typer.Option("--ref", help="Branch, tag or commit for --git [default: HEAD].")
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            metavar="KEY=VALUE",
            help="Parameter key=value (a YAML scalar); repeatable.",
        ),
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="Override the spec's name.")] = None,
    wait: WaitOption = False,
    follow: FollowOption = False,
    output: OutputOption = out.Output.table,
) -> None:
    """Submit a job from a YAML spec or a template; print its id (or the job with -o json).

    code: {upload: DIR} in the spec is relative to the spec file and is
    uploaded before submitting; --code DIR / --git URL --ref REF replace it.
    With --template NAME (or template: NAME in the spec file) the --param values
    are the template's parameters, checked and expanded by the server.
    """
    if spec_file is None and template is None:
        raise InputError("give a job spec file (SPEC.yaml) or --template NAME")
    raw = load_spec(spec_file) if spec_file is not None else {}
    if template is not None:
        raw.update(template_ref(template))
    what = f"job spec {str(spec_file)!r}" if spec_file is not None else "the job"
    prepared = prepare_spec(
        raw,
        spec_file.resolve().parent if spec_file is not None else Path.cwd(),
        code_dir=code,
        git=git,
        ref=ref,
        params=parse_params(param or []),
        name=name,
    )
    client = get_client(ctx)
    if prepared.upload_dir is not None:
        info = client.files.upload(prepared.upload_dir)
        prepared.spec["code"] = {"file": info["sha256"]}
        out.note(
            f"Uploaded {prepared.upload_dir} ({out.fmt_bytes(info.get('size', '?'))}, "
            f"sha256 {str(info['sha256'])[:12]})."
        )
    try:
        job = dict(client.jobs.submit(prepared.spec))
    except ValidationError as exc:
        raise InputError(f"the server rejected {what}: {exc.message}") from None
    _submitted(job, output, waiting=wait or follow)
    if wait or follow:
        _finish(client, str(job["id"]), output, follow=follow)


@app.command("list")
def list_(
    ctx: typer.Context,
    state: Annotated[str | None, typer.Option(help="Only jobs in this state.")] = None,
    group: Annotated[str | None, typer.Option(help="Only jobs of this group.")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many jobs.")] = None,
    output: OutputOption = out.Output.table,
) -> None:
    """List jobs, newest first (a member sees its group's)."""
    jobs = get_client(ctx).jobs.list(state=state, group=group, limit=limit)
    if output is out.Output.json:
        out.print_json(jobs)
        return
    out.print_table(
        ["ID", "NAME", "STATE", "GROUP", "USER", "ROLES", "CREATED", "REASON"],
        [
            [
                out.escape(j.get("id")),
                out.escape(j.get("name")),
                out.styled_state(j.get("state")),
                out.escape(j.get("group")),
                out.escape(j.get("user")),
                out.escape(_roles_summary(dict(j))),
                out.fmt_time(j.get("created_at")),
                out.escape(j.get("reason")),
            ]
            for j in jobs
        ],
    )


@app.command()
def get(ctx: typer.Context, job_id: JobId, output: OutputOption = out.Output.table) -> None:
    """Show one job."""
    show_job(dict(get_client(ctx).jobs.get(job_id)), output)


@app.command()
def logs(
    ctx: typer.Context,
    job_id: JobId,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep streaming until the job ends.")
    ] = False,
    role: Annotated[str | None, typer.Option(help="Only this role.")] = None,
    replica: Annotated[int | None, typer.Option(min=0, help="Only this replica index.")] = None,
    attempt: Annotated[
        int | None, typer.Option(min=0, help="Only this attempt (0 = first).")
    ] = None,
) -> None:
    """Print the job's logs: every replica and attempt, each line prefixed [role-replica].

    With --role and --replica, that replica's latest attempt (or --attempt N) is
    printed exactly as written.
    """
    client = get_client(ctx)
    prefixed = role is None or replica is None
    if follow:
        try:
            for line in client.jobs.follow_logs(
                job_id, role=role, replica=replica, attempt=attempt
            ):
                # A retry's lines stay marked even when one replica was asked for.
                _print_log_line(line, prefixed=prefixed or line.attempt > 0)
        except KeyboardInterrupt:
            _detached(job_id)
        return
    keys = client.jobs.log_keys(job_id, role=role, replica=replica, attempt=attempt)
    if not keys:
        client.jobs.get(job_id)  # a job that is not there (or not visible) -> NotFound
        wanted = ", ".join(
            f"{k} {v}"
            for k, v in (("role", role), ("replica", replica), ("attempt", attempt))
            if v is not None
        )
        if wanted:
            raise InputError(
                f"job {job_id} has no replica with {wanted}; see `plinth job replicas`"
            )
        out.note(f"Job {job_id} has no replica output yet.")
        return
    if not prefixed:
        keys = keys[-1:]  # one replica asked for: its latest attempt (or the one asked for)
    for r_role, r_replica, r_attempt in keys:
        data = _read_all(client, job_id, r_role, r_replica, r_attempt)
        text = data.decode("utf-8", errors="replace")
        lines = text.splitlines()
        if not prefixed:
            if text:
                out.print_line(text.removesuffix("\n"))
            continue
        for line in lines:
            _print_log_line(LogLine(r_role, r_replica, r_attempt, line), prefixed=True)


def _read_all(client: Client, job_id: str, role: str, replica: int, attempt: int) -> bytes:
    """Everything one attempt's log holds now."""
    chunks: list[bytes] = []
    offset = 0
    while True:
        try:
            chunk = client.jobs.logs(job_id, role, replica, attempt=attempt, offset=offset)
        except NotFoundError:
            break  # this attempt has not written a log yet
        chunks.append(chunk.data)
        if not chunk.data or chunk.offset <= offset:
            break
        offset = chunk.offset
    return b"".join(chunks)


@app.command()
def cancel(ctx: typer.Context, job_id: JobId, output: OutputOption = out.Output.table) -> None:
    """Cancel a job (its replicas get SIGTERM, then SIGKILL); finished jobs are left as they are."""
    job = dict(get_client(ctx).jobs.cancel(job_id))
    if output is out.Output.json:
        out.print_json(job)
        return
    out.stdout().print(f"Job {out.escape(job.get('id'))}: {out.styled_state(job.get('state'))}")


@app.command()
def events(ctx: typer.Context, job_id: JobId, output: OutputOption = out.Output.table) -> None:
    """Show the job's state changes, oldest first, each with its reason."""
    items = get_client(ctx).jobs.events(job_id)
    if output is out.Output.json:
        out.print_json(items)
        return
    out.print_table(
        ["TIME", "EVENT", "REASON"],
        [
            [out.fmt_time(e.get("time")), out.escape(e.get("type")), out.escape(e.get("reason"))]
            for e in items
        ],
    )


@app.command()
def replicas(ctx: typer.Context, job_id: JobId, output: OutputOption = out.Output.table) -> None:
    """Show every replica attempt: state, exit code, address, log size."""
    rows = get_client(ctx).jobs.replicas(job_id)
    if output is out.Output.json:
        out.print_json(rows)
        return
    out.print_table(
        ["ROLE", "REPLICA", "ATTEMPT", "STATE", "EXIT", "NODE", "ADDRESS", "LOG BYTES"],
        [
            [
                out.escape(r.get("role")),
                r.get("replica"),
                r.get("attempt"),
                out.styled_state(r.get("state")),
                r.get("exit_code"),
                out.escape(r.get("node")),
                out.escape(f"{r.get('host')}:{r.get('port')}" if r.get("host") else None),
                r.get("log_size"),
            ]
            for r in rows
        ],
    )


@app.command()
def explain(ctx: typer.Context, job_id: JobId, output: OutputOption = out.Output.table) -> None:
    """Why a job waits: its position, score breakdown and the exact reason, with numbers."""
    e = get_client(ctx).jobs.explain(job_id)
    if output is out.Output.json:
        out.print_json(e)
        return
    out.print_line(str(e.get("text", "")))


@app.command()
def rerun(
    ctx: typer.Context,
    job_id: JobId,
    wait: WaitOption = False,
    follow: FollowOption = False,
    output: OutputOption = out.Output.table,
) -> None:
    """Submit a new job with the same spec and the same recorded code."""
    client = get_client(ctx)
    job = dict(client.jobs.rerun(job_id))
    _submitted(job, output, waiting=wait or follow)
    if wait or follow:
        _finish(client, str(job["id"]), output, follow=follow)


@app.command()
def wait(
    ctx: typer.Context,
    job_id: JobId,
    timeout: Annotated[
        float | None, typer.Option(min=0, help="Give up after this many seconds (exit 1).")
    ] = None,
    output: OutputOption = out.Output.table,
) -> None:
    """Wait for a job to end; exit 0 only if it succeeded."""
    _finish(get_client(ctx), job_id, output, follow=False, timeout=timeout)
