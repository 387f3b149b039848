"""Plinth's hello example: ps-0 and the workers find each other and exchange greetings.

Every replica reads its rendezvous from the environment the platform sets:
PLINTH_ROLE, PLINTH_REPLICA, PLINTH_ROLES (JSON: role -> ["host:port", ...],
one address per replica) and PLINTH_PARAMS. The ps listens on its own address;
each worker connects to it, sends a greeting, and waits for the answer.
Exits 0 when every exchange happened, 1 otherwise. Standard library only.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time

TIMEOUT_S = 120.0  # how long to wait for the other side before giving up


def log(message: str) -> None:
    print(message, flush=True)


def split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def serve(me: str, address: str, peers: list[str], greeting: str) -> int:
    host, port = split(address)
    with socket.create_server((host, port)) as server:
        server.settimeout(TIMEOUT_S)
        log(f"{me}: listening on {address}, expecting {len(peers)} workers")
        for _ in peers:
            conn, _peer = server.accept()
            with conn, conn.makefile("rwb") as stream:
                message = stream.readline().decode().strip()
                log(f"{me}: received {message!r}")
                sender = message.rsplit(" ", 1)[-1]
                stream.write(f"{greeting} {sender}, this is {me}\n".encode())
                stream.flush()
    log(f"{me}: greeted all {len(peers)} workers")
    return 0


def call(me: str, address: str, greeting: str) -> int:
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        try:
            conn = socket.create_connection(split(address), timeout=10)
            break
        except OSError:
            # The ps may not be listening yet: the gang starts together, not in order.
            if time.monotonic() > deadline:
                log(f"{me}: could not reach ps at {address}")
                return 1
            time.sleep(0.1)
    with conn, conn.makefile("rwb") as stream:
        stream.write(f"{greeting} from {me}\n".encode())
        stream.flush()
        answer = stream.readline().decode().strip()
    log(f"{me}: ps answered {answer!r}")
    return 0 if answer else 1


def main() -> int:
    role = os.environ["PLINTH_ROLE"]
    replica = int(os.environ["PLINTH_REPLICA"])
    roles: dict[str, list[str]] = json.loads(os.environ["PLINTH_ROLES"])
    params = json.loads(os.environ.get("PLINTH_PARAMS") or "{}")
    greeting = str(params.get("greeting", "hello"))
    me = f"{role}-{replica}"
    others = {r: addresses for r, addresses in roles.items() if r != role}
    log(f"{me}: I am role {role} replica {replica} at {roles[role][replica]}")
    for other, addresses in sorted(others.items()):
        log(f"{me}: role {other} is at {', '.join(addresses)}")
    if role == "ps":
        return serve(me, roles[role][replica], roles.get("worker", []), greeting)
    return call(me, roles["ps"][0], greeting)


if __name__ == "__main__":
    sys.exit(main())
