"""The model registry: versions with lineage, aliases, deltas (``/api/v1/models``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from plinth.client._http import API_PREFIX, Transport, segment

JSON = dict[str, Any]


class Models:
    """Registered models. Members act on their group's models; admins on all."""

    def __init__(self, transport: Transport, files: Any) -> None:
        self._t = transport
        self._files = files

    def _path(self, name: str, *rest: object) -> str:
        parts = [segment(name, "model name"), *(segment(r, "model part") for r in rest)]
        return f"{API_PREFIX}/models/" + "/".join(parts)

    def register(self, name: str, path: str | Path | None = None, *,
                 from_job: str | None = None, job_path: str | None = None) -> JSON:
        """Register a package as ``name``'s next version: a local package directory
        (``path``, uploaded), or the directory ``job_path`` (default ``model``) of job
        ``from_job``'s working directory. Returns the version with its lineage."""
        if (path is None) == (from_job is None):
            from plinth.client._errors import PlinthError

            raise PlinthError("give exactly one of a package directory or from_job")
        if path is not None:
            body: JSON = {"file": self._files.upload(path)["sha256"]}
        else:
            body = {"job": from_job, **({"path": job_path} if job_path else {})}
        return cast(JSON, self._t.json("POST", self._path(name, "versions"), json=body))

    def list(self) -> list[JSON]:
        return cast("list[JSON]", self._t.json("GET", f"{API_PREFIX}/models"))

    def get(self, name: str) -> JSON:
        """The model with its versions and aliases."""
        return cast(JSON, self._t.json("GET", self._path(name)))

    def versions(self, name: str) -> list[JSON]:
        return cast("list[JSON]", self._t.json("GET", self._path(name, "versions")))

    def version(self, name: str, ref: str | int) -> JSON:
        """A version by number or alias."""
        return cast(JSON, self._t.json("GET", self._path(name, "versions", ref)))

    def alias(self, name: str, alias: str, version: int) -> JSON:
        """Point ``alias`` at ``version`` (atomically; the move joins the history)."""
        return cast(JSON, self._t.json("PUT", self._path(name, "aliases", alias),
                                       json={"version": version}))

    def history(self, name: str, alias: str | None = None) -> list[JSON]:
        params = {"alias": alias} if alias else None
        return cast("list[JSON]", self._t.json("GET", self._path(name, "history"),
                                               params=params))

    def publish_delta(self, name: str, version: str | int, seq: int,
                      path: str | Path | None = None, *, job: str | None = None,
                      job_path: str | None = None) -> JSON:
        """Publish delta ``seq`` (the next number) of a version: a local delta directory
        (``path``, uploaded) or ``job_path`` in a job's working directory (with a
        workload token, its own job by default)."""
        if path is not None:
            body: JSON = {"seq": seq, "file": self._files.upload(path)["sha256"]}
        else:
            body = {"seq": seq, **({"job": job} if job else {}),
                    **({"path": job_path} if job_path else {})}
        return cast(JSON, self._t.json("POST", self._path(name, "versions", version, "deltas"),
                                       json=body))

    def deltas(self, name: str, version: str | int, after: int = 0) -> list[JSON]:
        return cast("list[JSON]", self._t.json(
            "GET", self._path(name, "versions", version, "deltas"), params={"after": after}))
