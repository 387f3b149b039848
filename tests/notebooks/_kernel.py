"""Running code in a session's kernel through jupyter-server's own API: REST to start
a kernel, the kernel websocket (``/api/kernels/{id}/channels``) to execute a cell --
what JupyterLab itself does. Tornado's websocket client (a jupyter-server dependency)."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect


def _base(nb: dict[str, Any]) -> str:
    return nb["url"].removesuffix("/lab")


def start_kernel(nb: dict[str, Any]) -> str:
    """A new python3 kernel in the session; returns its id."""
    r = httpx.post(_base(nb) + "/api/kernels", json={"name": "python3"},
                   headers={"Authorization": f"token {nb['token']}"}, timeout=60,
                   trust_env=False)  # fmt: skip
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _request(code: str) -> tuple[str, str]:
    msg_id = uuid.uuid4().hex
    msg = {
        "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "test",
                   "session": uuid.uuid4().hex, "date": datetime.now(UTC).isoformat(),
                   "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": False,
                    "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
    }  # fmt: skip
    return msg_id, json.dumps(msg)


async def _run(
    nb: dict[str, Any], kernel: str, code: str, wait: bool, timeout: float
) -> dict[str, Any]:
    url = _base(nb).replace("http://", "ws://") + f"/api/kernels/{kernel}/channels"
    # The token in a header, as JupyterLab's server-side clients do, not in the URL.
    req = HTTPRequest(url, headers={"Authorization": f"token {nb['token']}"},
                      connect_timeout=timeout)  # fmt: skip
    ws = await websocket_connect(req)
    msg_id, raw = _request(code)
    await ws.write_message(raw)
    out: dict[str, Any] = {"stdout": "", "stderr": "", "status": None, "error": None}
    if not wait:
        ws.close()
        return out
    idle = False

    async def read() -> None:
        nonlocal idle
        while out["status"] is None or not idle:
            m = await ws.read_message()
            if m is None:
                raise AssertionError("the kernel websocket closed before the cell ended")
            if isinstance(m, bytes):
                continue
            msg = json.loads(m)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            t = msg["header"]["msg_type"]
            if t == "stream":
                out[msg["content"]["name"]] += msg["content"]["text"]
            elif t == "error":
                out["error"] = "\n".join(msg["content"].get("traceback", []))
            elif t == "execute_reply":
                out["status"] = msg["content"]["status"]
            elif t == "status" and msg["content"]["execution_state"] == "idle":
                idle = True
    try:
        await asyncio.wait_for(read(), timeout)
    finally:
        ws.close()
    return out


def run_cell(nb: dict[str, Any], kernel: str, code: str, timeout: float = 120) -> dict[str, Any]:
    """Execute `code` and wait for it: ``{"stdout", "stderr", "status", "error"}``."""
    return asyncio.run(_run(nb, kernel, code, True, timeout))


def send_cell(nb: dict[str, Any], kernel: str, code: str, timeout: float = 60) -> None:
    """Send `code` for execution and disconnect at once (the kernel keeps running it)."""
    asyncio.run(_run(nb, kernel, code, False, timeout))
