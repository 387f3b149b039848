"""The console in a real browser: Playwright driving Debian's Chromium, headless
(issue 16, Done-when 1). ``make install`` installs the chromium package (as root);
without /usr/bin/chromium these tests skip and say why -- except under CI=true.

One server for the module; every step waits for a condition (Playwright's
``expect``), never for a fixed time. With PLINTH_CONSOLE_SCREENSHOTS=DIR the tests
write each page's screenshot there (docs/console.md uses docs/images)."""

from __future__ import annotations

import os
import re
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from plinth.cli.local_server import LocalServer
from plinth.client import TERMINAL_STATES, Client

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
TOKEN = "plt_browser-admin-" + secrets.token_hex(4)
PY = sys.executable
TIMEOUT_MS = 90_000  # an upper bound for a two-core machine; expect returns as soon as it holds

if not CHROMIUM.exists():
    why = f"{CHROMIUM} is missing: `make install` installs Debian's chromium package as root"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(why, pytrace=False)
    pytest.skip(why, allow_module_level=True)

from playwright.sync_api import Browser, Page, expect, sync_playwright

TRAIN = """\
import os
from plinth.client import Client

with Client(os.environ["PLINTH_URL"], os.environ["PLINTH_TOKEN"]) as c:
    job = os.environ["PLINTH_WORKLOAD_ID"]
    points = [{"role": "main", "step": s, "values": {"loss": 1.0 / (s + 1), "auc": 0.5 + s / 60}}
              for s in range(25)]
    c.metrics.post(job, points)
for epoch in range(3):
    print(f"epoch {epoch} loss {1.0 / (epoch + 1):.3f}", flush=True)
print("training done", flush=True)
"""


def _shot(page: Page, name: str) -> None:
    where = os.environ.get("PLINTH_CONSOLE_SCREENSHOTS")
    if where:
        Path(where).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(where) / f"console-{name}.png"), full_page=True,
                        mask=[page.get_by_test_id("new-token")])  # no token in the docs


class World:
    """The server and what the setup made through the API."""

    def __init__(self, server: LocalServer, tmp: Path) -> None:
        self.server = server
        self.url = server.url
        self.api = Client(server.url, TOKEN)
        self.api.groups.create("recs", quota={"cpu": 4, "memory": "8Gi"})
        self.api.groups.create("ads", quota={"cpu": 1, "memory": "2Gi"},
                               borrow_limit={"cpu": 0, "memory": 0})  # fmt: skip
        self.ann = self.api.users.create("ann", group="recs")["token"]
        self.bob = self.api.users.create("bob", group="ads")["token"]
        self.train = tmp / "train.py"
        self.train.write_text(TRAIN)
        sleeper = {"resources": {"cpu": 1, "memory": "64Mi"},
                   "command": [PY, "-c", "import time; time.sleep(600)"]}  # fmt: skip
        with Client(server.url, self.bob) as bob:
            # one runs (ads' whole quota), the next waits: the queue has a reason to show
            self.bob_job = bob.jobs.submit({"name": "ads-secret", "roles": {"main": sleeper}})
            self.bob_waiting = bob.jobs.submit({"name": "ads-waits", "roles": {"main": sleeper}})
        self._models(server.home)

    def _models(self, home: Path) -> None:
        # The registry's versions as if registered (the packages' validation is the
        # registry's own tests' business): model ctr of group recs, v1 and v2.
        from plinth.config import database_url
        from plinth.store.db import Database
        from plinth.store.models import Group, Model, ModelAlias, ModelAliasMove, ModelVersion

        db = Database(database_url(home))
        try:
            with db.session() as s:
                gid = s.query(Group.id).filter(Group.name == "recs").scalar()
                m = Model(name="ctr", group_id=gid, created_by="ann")
                s.add(m)
                s.flush()
                for v in (1, 2):
                    s.add(ModelVersion(model_id=m.id, version=v, path=f"models/ctr/{v}",
                                       lineage={"job": f"job-train{v}", "auc": 0.7 + v / 100},
                                       created_by="ann"))  # fmt: skip
                s.add(ModelAlias(model_id=m.id, alias="production", version=1))
                s.add(ModelAliasMove(model_id=m.id, alias="production", from_version=None,
                                     to_version=1, moved_by="ann"))  # fmt: skip
        finally:
            db.dispose()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("console-browser")
    config = {
        "nodes": [{"name": "n1", "cpu": 6, "memory": "16Gi", "gpu": 0}],
        "scheduler": {"poll_interval": 0.05},
        "jobs": {"grace": "1s"},
    }
    server = LocalServer(tmp / "home", config=config, admin_token=TOKEN).start()
    try:
        yield World(server, tmp)
    finally:
        try:
            with Client(server.url, TOKEN) as c:
                for job in c.jobs.list(limit=10000):
                    if job["state"] not in TERMINAL_STATES:
                        c.jobs.cancel(job["id"])
                for nb in c.notebooks.list(limit=10000):
                    if nb["state"] not in TERMINAL_STATES:
                        c.notebooks.stop(nb["id"])
        finally:
            server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        # --no-sandbox: Chromium's sandbox refuses to run as root (the tests' machine)
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                              args=["--no-sandbox"])  # fmt: skip
        try:
            yield b
        finally:
            b.close()


def _login(browser: Browser, world: World, token: str) -> Page:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.goto(world.url + "/")
    expect(page).to_have_url(re.compile(r"/login\?next=%2F$"))
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    expect(page).to_have_url(world.url + "/")
    return page


def test_member_submits_a_job_watches_it_finish_and_reads_its_logs_and_chart(browser, world):
    page = _login(browser, world, world.ann)
    expect(page.get_by_test_id("whoami")).to_contain_text("ann · recs")
    expect(page.get_by_test_id("group-recs")).to_be_visible()
    expect(page.get_by_test_id("group-ads")).to_have_count(0)  # members see their group only
    _shot(page, "overview-member")

    page.click("text=Jobs")
    page.click("text=Submit a job")
    page.fill("input[name=name]", "ctr-train")
    page.fill("input[name=command]", f"{PY} {world.train}")
    page.fill("input[name=cpu]", "0.5")
    page.fill("input[name=memory]", "256Mi")
    _shot(page, "submit")
    page.click("button:has-text('Submit')")
    expect(page).to_have_url(re.compile(r"/jobs/job-[0-9a-f]+$"))
    job_id = page.url.rsplit("/", 1)[1]

    # the page polls (htmx): watch the state reach succeeded without reloading
    expect(page.locator("#live .facts .state")).to_have_text("succeeded", timeout=TIMEOUT_MS)
    log = page.get_by_test_id("log-main-0")  # appears by itself once the replica started
    expect(log).to_contain_text("training done")
    expect(log).to_have_attribute("data-complete", "true")
    chart = page.get_by_test_id("metrics-chart")
    expect(chart.locator(".metric[data-metric=loss] canvas")).to_be_visible()
    expect(chart.locator(".metric[data-metric=auc] canvas")).to_be_visible()
    expect(chart).to_have_attribute("data-complete", "true")
    expect(page.locator(".timeline")).to_contain_text("succeeded")
    _shot(page, "job")

    # another group's jobs: not listed, and not reachable by URL
    page.goto(world.url + "/jobs")
    expect(page.get_by_test_id(f"job-{job_id}")).to_be_visible()
    expect(page.get_by_test_id(f"job-{world.bob_job['id']}")).to_have_count(0)
    expect(page.locator("main")).not_to_contain_text("ads-secret")
    _shot(page, "jobs")
    resp = page.goto(f"{world.url}/jobs/{world.bob_job['id']}")
    assert resp is not None and resp.status == 404
    expect(page.get_by_test_id("error")).to_contain_text("not found")
    resp = page.goto(world.url + "/admin")
    assert resp is not None and resp.status == 403


def test_member_moves_a_model_alias(browser, world):
    page = _login(browser, world, world.ann)
    page.goto(world.url + "/models")
    expect(page.locator("main")).to_contain_text("production → v1")
    page.click("text=ctr")
    page.select_option("select[name=version]", "2")
    page.fill("input[name=alias]", "production")
    page.click("button:has-text('Move')")
    expect(page.get_by_test_id("aliases")).to_contain_text("production → version 2")
    expect(page.locator(".timeline")).to_contain_text("v1 → v2 by ann")
    _shot(page, "model")
    assert world.api.models.get("ctr")["aliases"] == {"production": 2}


def test_member_starts_opens_extends_and_stops_a_notebook(browser, world):
    page = _login(browser, world, world.ann)
    page.goto(world.url + "/notebooks")
    page.fill("input[name=name]", "explore")
    page.fill("input[name=cpu]", "0.5")
    page.fill("input[name=memory]", "512Mi")
    page.click("button:has-text('Start')")
    row = page.locator("tr", has_text="explore")
    expect(row).to_be_visible()
    expect(row.locator(".state")).to_have_text(re.compile("pending|admitted|running"))
    # ready: the link opens JupyterLab with the session's token; the time left shows
    link = row.get_by_role("link", name="JupyterLab")
    expect(link).to_be_visible(timeout=TIMEOUT_MS)
    href = link.get_attribute("href") or ""
    assert "token=" in href
    assert page.request.get(href).ok
    expect(row.locator("td").nth(4)).to_have_text(re.compile(r"\d+h \d+m|\d+m \d+s"))
    _shot(page, "notebooks")
    nb_id = (row.get_attribute("data-testid") or "").removeprefix("nb-")
    before = world.api.notebooks.get(nb_id)["max_lifetime"]
    with page.expect_response(lambda r: r.url.endswith("/extend")) as done:
        row.locator("button:has-text('Extend')").click()  # by the form's default, 1h
    assert done.value.status == 303
    assert world.api.notebooks.get(nb_id)["max_lifetime"] == before + 3600
    row = page.locator("tr", has_text="explore")
    row.locator("button:has-text('Stop')").click()
    expect(page.locator("tr", has_text="explore").locator(".state")).to_have_text(
        re.compile("cancelled|succeeded"))
    nb = [n for n in world.api.notebooks.list() if n["name"] == "explore"]
    assert nb and nb[0]["state"] in TERMINAL_STATES


def test_admin_sees_every_group_the_queue_with_its_reason_and_the_admin_page(browser, world):
    page = _login(browser, world, TOKEN)
    expect(page.get_by_test_id("group-ads")).to_be_visible()
    expect(page.get_by_test_id("group-recs")).to_be_visible()
    expect(page.get_by_test_id("usage-chart").locator(".metric[data-metric=cpu] canvas")
           ).to_be_visible()  # fmt: skip
    _shot(page, "overview")
    page.click("text=Queue")
    entry = page.get_by_test_id(f"queue-{world.bob_waiting['id']}")
    expect(entry).to_contain_text("ads")
    expect(entry.locator(".reason")).to_contain_text("group ads: cpu 1/1 in use")
    _shot(page, "queue")
    page.click("text=Admin")
    page.fill("form[action='/admin/users'] input[name=name]", "carol")
    page.select_option("form[action='/admin/users'] select[name=group]", "recs")
    page.click("form[action='/admin/users'] button")
    expect(page.get_by_test_id("new-token")).to_contain_text("plt_")
    _shot(page, "admin")
    # the job page of a waiting job explains why
    page.goto(f"{world.url}/jobs/{world.bob_waiting['id']}")
    expect(page.get_by_test_id("explain")).not_to_be_empty()
    _shot(page, "job-waiting")


def test_member_sets_a_deployments_canary_share_and_deletes_it(browser, world):
    # ctr's version rows point at these directories (not model packages: no model is
    # trained here, so the replicas exit and are restarted; the page shows them anyway).
    for v in (1, 2):
        pkg = world.server.home / "models" / "ctr" / str(v)
        pkg.mkdir(parents=True, exist_ok=True)
        (pkg / "README").write_text("not a model package\n")
    with Client(world.url, world.ann) as ann:
        ann.deployments.create("ctr-live", "ctr@1", replicas=2, cpu=0.1, memory="64Mi",
                               canary="ctr@2", canary_percent=10)
    page = _login(browser, world, world.ann)
    page.click("nav >> text=Deployments")
    row = page.get_by_test_id("deploy-ctr-live")
    expect(row).to_contain_text("ctr@1")
    expect(row).to_contain_text("10.0% → v2")
    _shot(page, "deployments")
    page.click("a:has-text('ctr-live')")
    expect(page.get_by_test_id("deploy-version")).to_have_text("1")
    page.fill("input[name=canary_percent]", "25")
    page.click("button:has-text('Set')")
    expect(page.get_by_test_id("deploy-canary")).to_contain_text("25.0% of requests")
    expect(page.locator(".timeline")).to_contain_text("canary share 10% -> 25% by ann")
    _shot(page, "deployment")
    page.click("button:has-text('Delete')")
    expect(page.locator(".facts .state")).to_have_text("cancelled")
    assert world.api.deployments.get("ctr-live")["state"] == "cancelled"
    # another group's member: neither listed nor reachable
    other = _login(browser, world, world.bob)
    resp = other.goto(world.url + "/deployments/ctr-live")
    assert resp is not None and resp.status == 404
