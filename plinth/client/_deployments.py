"""Deployments: registered models served under quota (``/api/v1/deployments``)."""

from __future__ import annotations

from typing import Any, cast

from plinth.client._http import API_PREFIX, Transport, segment

JSON = dict[str, Any]


class Deployments:
    """Models served by replicas of ``python -m plinth.serve``, scheduled under the
    group's quota. Members act on their group's deployments; admins on all."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def _path(self, name: str, *rest: str) -> str:
        return "/".join([f"{API_PREFIX}/deployments", segment(name, "deployment name"),
                         *rest])

    def create(self, name: str, model: str, *, replicas: int = 1, cpu: float | None = None,
               memory: str | int | None = None, gpu: int | None = None,
               group: str | None = None, **options: Any) -> JSON:
        """Deploy ``model`` (``NAME@ALIAS``: followed; ``NAME@VERSION``: pinned) on
        ``replicas`` replicas of ``cpu`` cores and ``memory`` each."""
        res = {k: v for k, v in (("cpu", cpu), ("memory", memory), ("gpu", gpu))
               if v is not None}
        body: JSON = {"name": name, "model": model, "replicas": replicas, **options}
        if res:
            body["resources"] = res
        if group is not None:
            body["group"] = group
        return cast(JSON, self._t.json("POST", f"{API_PREFIX}/deployments", json=body))

    def list(self, all: bool = False) -> list[JSON]:
        """Live deployments (``all``: deleted and failed ones too), newest first."""
        return cast("list[JSON]", self._t.json("GET", f"{API_PREFIX}/deployments",
                                               params={"all": str(all).lower()}))

    def get(self, name: str) -> JSON:
        return cast(JSON, self._t.json("GET", self._path(name)))

    def scale(self, name: str, replicas: int) -> JSON:
        return cast(JSON, self._t.json("POST", self._path(name, "scale"),
                                       json={"replicas": replicas}))

    def traffic(self, name: str, canary_percent: float) -> JSON:
        """Set the share of requests (percent) the deployment's canary gets."""
        return cast(JSON, self._t.json("POST", self._path(name, "traffic"),
                                       json={"canary_percent": canary_percent}))

    def delete(self, name: str) -> JSON:
        return cast(JSON, self._t.json("DELETE", self._path(name)))

    def events(self, name: str) -> list[JSON]:
        return cast("list[JSON]", self._t.json("GET", self._path(name, "events")))

    def predict(self, name: str, records: list[JSON]) -> JSON:
        """Score feature dicts through the platform's endpoint (balanced, retried)."""
        return cast(JSON, self._t.json("POST", self._path(name, "predict"), json=records))
