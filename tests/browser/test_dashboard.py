"""The live dashboard (``GET /``, docs/reference/http.rst) in a real headless Chromium, driven by Playwright.

Needs the ``playwright`` Python package (its own browsers are *not* used:
``playwright install`` is never run) and a system Chromium
(``apt-get install chromium``).  Without either, these tests skip and say
which is missing.  The main test saves a screenshot to
``test-artifacts/dashboard.png`` at the top of the repository.
"""

import json
import os
import shutil
import signal
import sys
import urllib.request

import pytest

from support import free_port, wait_until
from support.workers import wait_looping, write_daemon

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # the skip below says so
    sync_playwright = None


def _find_chromium():
    for candidate in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


CHROMIUM = _find_chromium()
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
ARTIFACTS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                         "test-artifacts")

pytestmark = [
    pytest.mark.skipif(sync_playwright is None,
                       reason="the playwright Python package is not installed (pip install playwright)"),
    pytest.mark.skipif(CHROMIUM is None,
                       reason="no chromium executable (apt-get install chromium)"),
]

PAUSED = 2
WORKERS = '''
    daemon.workers.install(Counter("alpha"), looptime=0.1, forever=True)
    daemon.workers.install(GCounter("beta"), looptime=0.5)
'''


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10000)
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    try:
        yield page
    finally:
        context.close()


def start(spawn, workdir, port, wait=True, clean=False, **config):
    cfg = {"websockethandler": "tcp://127.0.0.1:%d" % port, "description": "Dashboard Test"}
    cfg.update(config)
    path = write_daemon(workdir, WORKERS, config=cfg)
    return spawn([sys.executable, path, "-f"] + (["-s"] if clean else []), wait=wait)


def text(page, selector):
    return page.text_content(selector).strip()


def test_dashboard_shows_and_drives_workers(page, spawn, workdir):
    port = free_port()
    proc = start(spawn, workdir, port)
    alpha = wait_looping(proc, "alpha")
    wait_looping(proc, "beta")
    status = proc.result("daemon.status")

    page.goto("http://127.0.0.1:%d/" % port)
    page.wait_for_selector('body[data-ready="true"]')
    page.evaluate("window.__sameDocument = true")
    assert text(page, "#description") == "Dashboard Test"
    assert text(page, "#pid") == str(status["pid"])
    assert text(page, "#version") == status["version"]
    assert page.get_attribute("#conn", "data-state") == "open"

    row = 'tr[data-worker="alpha"]'
    assert text(page, row + " .status") == "LOOPING"
    assert text(page, row + " .pid") == str(alpha["pid"])
    assert text(page, row + " .kind") == "process"
    assert text(page, 'tr[data-worker="beta"] .kind') == "greenlet"
    assert text(page, 'tr[data-worker="beta"] .pid') == str(status["pid"])

    # Pause: the pushed worker.state event turns the badge PAUSED.
    page.click(row + ' [data-action="pause"]')
    page.wait_for_selector(row + '[data-status="PAUSED"]')
    assert text(page, row + " .status") == "PAUSED"
    assert proc.result("worker.status", ["alpha"]) == PAUSED
    page.click(row + ' [data-action="resume"]')
    page.wait_for_selector(row + '[data-status="LOOPING"]')

    # SIGKILL it: the page follows RESTARTING, then LOOPING with a new pid.
    seen_before = len(page.get_attribute(row, "data-history").split())
    os.kill(alpha["pid"], signal.SIGKILL)
    page.wait_for_function(
        """([selector, seenBefore, oldPid]) => {
             const row = document.querySelector(selector);
             const history = row.dataset.history.split(" ").slice(seenBefore);
             const restarting = history.indexOf("RESTARTING");
             const pid = row.querySelector(".pid").textContent;
             return restarting >= 0 && history.slice(restarting + 1).includes("LOOPING")
                    && row.dataset.status === "LOOPING" && pid !== String(oldPid) && pid !== "–";
           }""", arg=[row, seen_before, alpha["pid"]])
    new_pid = int(text(page, row + " .pid"))
    assert new_pid == proc.result("worker.info", ["alpha"])["pid"] != alpha["pid"]
    page.wait_for_function("s => document.querySelector(s).textContent.trim() === '1'",
                           arg=row + " .restarts")
    assert page.locator('#events li[data-event="worker.exited"]').count() >= 1

    # The method console: a result, then an error.
    page.click('li[data-method="test.ping"]')
    page.wait_for_function("() => document.getElementById('method-signature').textContent !== ''")
    page.fill("#params", "[]")
    page.click("#call")
    page.wait_for_selector('#call-result[data-state="ok"]')
    assert json.loads(text(page, "#call-result")) == "pong"
    page.click('li[data-method="worker.info"]')
    page.wait_for_function("() => document.getElementById('method-help').textContent !== ''")
    page.fill("#params", '["nobody"]')
    page.click("#call")
    page.wait_for_selector('#call-result[data-state="error"]')
    assert "-32002" in text(page, "#call-result")

    assert page.evaluate("window.__sameDocument") is True  # never reloaded
    assert page.errors == []
    os.makedirs(ARTIFACTS, exist_ok=True)
    page.screenshot(path=os.path.join(ARTIFACTS, "dashboard.png"), full_page=True)


def test_dashboard_reconnects(page, spawn, workdir):
    port = free_port()
    first = start(spawn, workdir, port)
    page.goto("http://127.0.0.1:%d/" % port)
    page.wait_for_selector('body[data-ready="true"]')
    page.evaluate("window.__sameDocument = true")
    old_pid = text(page, "#pid")

    first.stop()  # SIGKILL: no goodbye
    page.wait_for_selector('#conn[data-state="closed"]')
    second = start(spawn, workdir, port, clean=True)
    new_pid = str(second.result("daemon.status")["pid"])
    page.wait_for_function("pid => document.getElementById('pid').textContent === pid", arg=new_pid,
                           timeout=20000)
    page.wait_for_selector('body[data-ready="true"]')
    assert new_pid != old_pid
    assert page.get_attribute("#conn", "data-state") == "open"
    assert page.evaluate("window.__sameDocument") is True
    assert page.errors == []


def test_dashboard_asks_for_the_token(page, spawn, workdir):
    port = free_port()
    start(spawn, workdir, port, wait=False, token="s3cret")

    def up():
        request = urllib.request.Request(
            "http://127.0.0.1:%d/rpc" % port,
            json.dumps({"jsonrpc": "2.0", "method": "worker.status", "params": ["alpha"], "id": 1}).encode(),
            {"Content-Type": "application/json", "Authorization": "Bearer s3cret"})
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read()).get("result") == 1
    wait_until(up, 15, message="daemon with token serving")

    page.goto("http://127.0.0.1:%d/" % port)
    page.wait_for_selector("#auth[open]")
    assert page.is_hidden("#auth-error")
    page.fill("#token", "wrong")
    page.click("#auth-submit")
    page.wait_for_selector("#auth[open] #auth-error:not([hidden])")
    page.fill("#token", "s3cret")
    page.click("#auth-submit")
    page.wait_for_selector('body[data-ready="true"]')
    assert text(page, 'tr[data-worker="alpha"] .status') == "LOOPING"
    assert page.evaluate("sessionStorage.getItem('gdaemon.token')") == "s3cret"
    # A reload reuses the stored token without asking again.
    page.reload()
    page.wait_for_selector('body[data-ready="true"]')
    assert page.is_hidden("#auth")
    assert page.errors == []


# -- operating it: log pane, charts, memory/CPU, actions that make sense ------------

OPS_WORKERS = '''
    daemon.workers.install(Counter("alpha"), looptime=0.1, forever=True)
    daemon.workers.install(SlowStop("slow"), looptime=0.5)

    @daemon.rpc.method("test.warn", params=[("text", str)], returns=bool)
    def warn(text):
        daemon.logger.warning("%s", text)
        return True
'''

SLOW_STOP = '''
class SlowStop(GreenletWorker):
    def loop(self):
        pass

    def spindown(self):
        gevent.sleep(4)
'''


def start_ops(spawn, workdir, port):
    cfg = {"websockethandler": "tcp://127.0.0.1:%d" % port, "description": "Ops Dashboard",
           "shutdowntimeout": 10}
    path = write_daemon(workdir, OPS_WORKERS, extra=SLOW_STOP, config=cfg)
    return spawn([sys.executable, path, "-f"])


def enabled(page, selector):
    return page.eval_on_selector(selector, "el => !el.disabled")


def test_dashboard_log_pane_charts_and_resources(page, spawn, workdir):
    port = free_port()
    proc = start_ops(spawn, workdir, port)
    alpha = wait_looping(proc, "alpha")
    page.goto("http://127.0.0.1:%d/" % port)
    page.wait_for_selector('body[data-ready="true"]')

    # The log pane starts with daemon.logtail, then follows log.record events.
    page.wait_for_selector('#log li:has-text("Ops Dashboard ready on")')
    proc.result("test.warn", ["a warning for the pane"])
    item = page.wait_for_selector('#log li[data-level="WARNING"]:has-text("a warning for the pane")')
    assert "WARNING gdaemon.ops-dashboard[%d]: a warning for the pane" % proc.pid in item.text_content()
    # Log lines are not copied into the events list.
    assert page.locator('#events li[data-event="log.record"]').count() == 0

    # Memory and CPU columns, from worker.info.
    row = 'tr[data-worker="alpha"]'
    if alpha.get("rss") is not None:
        page.wait_for_function("s => /\\d (KB|MB|GB)$/.test(document.querySelector(s).textContent)",
                               arg=row + " .rss")
        page.wait_for_function("s => / s$/.test(document.querySelector(s).textContent)", arg=row + " .cpu")
    else:
        assert text(page, row + " .rss") == "–"

    # Charts: one sample per two-second poll; requests/s from GET /metrics.
    page.wait_for_function("() => Number(document.getElementById('chart-rps').dataset.samples) >= 2",
                           timeout=15000)
    for chart in ("#chart-rps", "#chart-restarts", "#chart-memory"):
        assert int(page.get_attribute(chart, "data-samples")) >= 2
        points = page.get_attribute(chart + " polyline.line", "points")
        assert len(points.split()) >= 2, (chart, points)
    assert float(text(page, '#chart-rps [data-role="value"]')) > 0   # the page's own polls count
    assert text(page, '#chart-restarts [data-role="value"]') == "0"
    os.kill(alpha["pid"], signal.SIGKILL)
    page.wait_for_function(
        "() => document.querySelector('#chart-restarts [data-role=\"value\"]').textContent === '1'",
        timeout=15000)
    assert page.errors == []


def test_dashboard_disables_actions_that_make_no_sense(page, spawn, workdir):
    port = free_port()
    proc = start_ops(spawn, workdir, port)
    wait_looping(proc, "alpha")
    wait_looping(proc, "slow")
    page.goto("http://127.0.0.1:%d/" % port)
    page.wait_for_selector('body[data-ready="true"]')
    row = 'tr[data-worker="alpha"]'
    page.wait_for_selector(row + '[data-status="LOOPING"]')
    assert enabled(page, row + ' [data-action="pause"]')
    assert not enabled(page, row + ' [data-action="resume"]')
    assert enabled(page, row + ' [data-action="restart"]')
    assert enabled(page, "#pause-all") and enabled(page, "#call")

    page.click(row + ' [data-action="pause"]')
    page.wait_for_selector(row + '[data-status="PAUSED"]')
    page.wait_for_function("s => !document.querySelector(s).disabled", arg=row + ' [data-action="resume"]')
    assert not enabled(page, row + ' [data-action="pause"]')

    # Stopping: alpha goes STOPPED at once, "slow" takes 4 s to spin down
    # while the page is still connected.  Nothing can be done to a stopped worker.
    proc.signal(signal.SIGTERM)
    page.wait_for_selector(row + '[data-status="STOPPED"]')
    for action in ("pause", "resume", "restart"):
        assert not enabled(page, row + ' [data-action="%s"]' % action), action

    # Disconnected: every action is off until the page is live again.
    assert proc.wait(20) == 0
    page.wait_for_selector('body[data-connected="false"]')
    page.wait_for_selector('#conn[data-state="closed"]')
    for selector in ("#pause-all", "#resume-all", "#call", 'tr[data-worker="slow"] [data-action="restart"]',
                     row + ' [data-action="restart"]'):
        assert not enabled(page, selector), selector
    assert page.errors == []


def test_dashboard_scales_a_pool(page, spawn, workdir):
    port = free_port()
    path = write_daemon(workdir, 'daemon.workers.install(Counter("web"), looptime=0.2, forever=True, instances=2)',
                        config={"websockethandler": "tcp://127.0.0.1:%d" % port})
    proc = spawn([sys.executable, path, "-f"])
    wait_looping(proc, "web.0")
    wait_looping(proc, "web.1")
    page.goto("http://127.0.0.1:%d/" % port)
    page.wait_for_selector('body[data-ready="true"]')
    page.wait_for_selector('#scale-pool option[value="web"]', state="attached")
    assert page.input_value("#scale-count") == "2"
    page.fill("#scale-count", "4")
    page.click("#scale")
    for i in range(4):
        page.wait_for_selector('tr[data-worker="web.%d"][data-status="LOOPING"]' % i)
    assert proc.result("worker.list") == ["web.0", "web.1", "web.2", "web.3"]
    page.fill("#scale-count", "1")
    page.click("#scale")
    page.wait_for_selector('tr[data-worker="web.1"]', state="detached")
    assert proc.result("worker.list") == ["web.0"]
    assert page.errors == []
