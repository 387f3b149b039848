"""Connecting this process to Ray: the two things every Plinth driver of Ray needs
(the Ray executor, ``plinth data build --engine ray``).

* :func:`unreachable` - fail fast on a GCS address nothing listens on: ``ray.init``
  would retry for minutes, printing warnings, before it gives up.
* :func:`loopback_init` - Ray turns a loopback address given to ``ray.init`` into this
  machine's outward IP (``services.resolve_ip_for_localhost``) unless "clusters" are off;
  a cluster kept on loopback could then not be reached, and a local Ray would listen on
  the outward IP. Only this process's ``ray.init`` call is affected.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import Iterator

__all__ = ["is_loopback", "loopback_init", "unreachable"]


def unreachable(address: str, timeout_s: float = 5.0) -> str | None:
    """Why nothing answers at `address` (HOST:PORT), or None when something listens
    there (or the address is a form Ray resolves itself: "auto", "ray://...")."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        return None
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            return None
    except OSError as e:
        return str(e.strerror or e)


def is_loopback(host: str) -> bool:
    """Whether `host` (an IP or "localhost", maybe in brackets) is a loopback address."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@contextlib.contextmanager
def loopback_init(loopback: bool) -> Iterator[None]:
    """Around ``ray.init``: when `loopback`, keep Ray from rewriting loopback addresses."""
    from ray._private import ray_constants

    saved = ray_constants.ENABLE_RAY_CLUSTER
    try:
        if loopback:
            ray_constants.ENABLE_RAY_CLUSTER = False
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved
