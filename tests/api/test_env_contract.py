"""Each replica's environment: real ports in PLINTH_ROLES, and roles that find each other."""

from __future__ import annotations

import json

from .conftest import Plinth, role

SERVER = r"""
import os, socket
port = int(os.environ['PLINTH_PORT'])
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', port)); s.listen()
print('server', os.environ['PLINTH_REPLICA'], 'listening on', port, flush=True)
for _ in range(2):
    c, _ = s.accept()
    print('server got', c.recv(100).decode(), flush=True)
    c.close()
"""

CLIENT = r"""
import json, os, socket, time
roles = json.loads(os.environ['PLINTH_ROLES'])
print('client', os.environ['PLINTH_REPLICA'], 'sees server at', roles['server'], flush=True)
host, port = roles['server'][0].rsplit(':', 1)
deadline = time.time() + 15
while True:
    try:
        c = socket.create_connection((host, int(port)), timeout=1); break
    except OSError:
        if time.time() > deadline: raise
        time.sleep(0.05)
c.sendall(('hello from worker ' + os.environ['PLINTH_REPLICA'] + ' rank ' + os.environ['RANK']
           + '/' + os.environ['WORLD_SIZE'] + ' master ' + os.environ['MASTER_PORT']).encode())
c.close()
"""


def test_roles_find_each_other_through_plinth_roles(plinth: Plinth) -> None:
    h, _ = plinth.member()
    job = plinth.submit(h, {"server": role(SERVER), "worker": role(CLIENT, 2)}, params={"lr": 0.01})
    done = plinth.wait(h, job["id"], timeout=30)
    assert done["state"] == "succeeded", (done, plinth.log(h, job["id"], "server", 0))
    reps = plinth.c.get(f"/api/v1/jobs/{job['id']}/replicas", headers=h).json()
    ports = {(r["role"], r["replica"]): r["port"] for r in reps}
    assert len(set(ports.values())) == 3 and all(p > 0 for p in ports.values())
    server_log = plinth.log(h, job["id"], "server", 0)
    assert f"listening on {ports[('server', 0)]}" in server_log
    master = ports[("worker", 0)]
    for i in range(2):
        assert f"server got hello from worker {i} rank {i}/2 master {master}" in server_log
        assert f"sees server at ['127.0.0.1:{ports[('server', 0)]}']" in plinth.log(
            h, job["id"], "worker", i
        )


def test_every_contract_variable_is_set(plinth: Plinth) -> None:
    h, _ = plinth.member()
    code = "import os, json; print(json.dumps({k: v for k, v in os.environ.items() if k.startswith(('PLINTH_', 'MASTER_', 'RANK', 'WORLD_', 'CUDA_', 'MINE'))}))"
    spec_role = {**role(code), "resources": {"cpu": 0.1, "gpu": 1}, "env": {"MINE": "yes"}}
    job = plinth.submit(h, {"main": spec_role}, params={"lr": 0.01, "layers": [1, 2]})
    assert plinth.wait(h, job["id"])["state"] == "succeeded"
    env = json.loads(plinth.log(h, job["id"], "main", 0))
    rep = plinth.c.get(f"/api/v1/jobs/{job['id']}/replicas", headers=h).json()[0]
    assert env["PLINTH_WORKLOAD_ID"] == job["id"]
    assert (env["PLINTH_ROLE"], env["PLINTH_REPLICA"], env["PLINTH_ATTEMPT"]) == ("main", "0", "0")
    assert json.loads(env["PLINTH_ROLES"]) == {"main": [f"127.0.0.1:{rep['port']}"]}
    assert env["PLINTH_PORT"] == str(rep["port"])
    assert json.loads(env["PLINTH_PARAMS"]) == {"lr": 0.01, "layers": [1, 2]}
    assert env["PLINTH_URL"].startswith("http://") and env["PLINTH_TOKEN"].startswith("plt_")
    assert (env["RANK"], env["WORLD_SIZE"], env["MASTER_PORT"]) == ("0", "1", str(rep["port"]))
    assert env["CUDA_VISIBLE_DEVICES"] == str(rep["gpus"][0]) and env["MINE"] == "yes"
    assert env.get("PLINTH_ADMIN_TOKEN", "") == ""  # the server's secret is not passed on
