"""The console in headless Chromium (Debian's package, driven by Playwright; no browser download).

One DSO server (uvicorn on a thread, connected to a real Mosquitto) and one browser for the whole module.
Operators log in, see the live feeder, approve a reconfiguration plan and watch the switches change over
server-sent events; a transaction's inclusion proof is checked in the browser with WebCrypto (and a tampered
one fails); a viewer fails to operate a switch. Screenshots go to test-artifacts/console/.
The DSO's switching executor drives firmware-sim relays (one per branch of case33bw) over real Modbus TCP on
loopback, so "the relays change" is read from the emulated relay mechanisms themselves.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from console.helpers import CHROMIUM, CHROMIUM_ARGS, PASSWORD, USERS, fast_hasher
from peergrid_dso.auth.users import UserStore
from peergrid_ledger.proof import check_proof
from peergrid_sim.background import BackgroundSim
from peergrid_sim.broker import MosquittoBroker, free_port, wait_for_port
from peergrid_sim.scenario import Relay, Scenario

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect
pytestmark = [
    pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="Debian's chromium is not installed"),
    pytest.mark.xdist_group("console-browser"),
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"


class Relays(BackgroundSim):
    """firmware-sim relays for every case33bw branch, on their own event loop thread."""

    def __init__(self) -> None:
        ties = range(33, 38)
        relays = [Relay(name=f"s{b}", branch=b, closed=b not in ties, tie=b in ties, operate_delay_s=0.05)
                  for b in range(1, 38)]  # fmt: skip
        super().__init__(Scenario(name="console-relays", relays=relays), None)

    def positions(self) -> dict[int, bool]:
        return dict(self.call(lambda: {r.branch: r.mechanism.closed for r in self.app.sim.relays.values()}))

    def __enter__(self) -> Relays:
        self.start(timeout=20)
        return self


class Server:
    def __init__(self, url: str, app: Any, relays: Relays) -> None:
        self.url = url
        self.app = app
        self.relays = relays

    @property
    def console(self) -> Any:
        return self.app.state.console

    @property
    def dso(self) -> Any:
        return self.app.state.dso


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    import uvicorn

    from peergrid_dso.app import create_app
    from peergrid_dso.config import DsoSettings
    from peergrid_dso.drivers.relay_modbus import ModbusRelayDriver, RelayEndpoint

    tmp = tmp_path_factory.mktemp("console-browser")
    store = UserStore(tmp / "users.json", hasher=fast_hasher())
    for name, role in USERS.items():
        store.add(name, role, PASSWORD)
    with MosquittoBroker(tmp / "broker") as broker, Relays() as relays:
        port = free_port()
        settings = DsoSettings.model_validate(
            {
                "broker": {"host": broker.host, "port": broker.port},
                "http": {"host": "127.0.0.1", "port": port},
                "console": {"users_file": str(tmp / "users.json"), "refresh_s": 0.3, "lab_drift": False},
            }
        )
        app = create_app(settings)
        uv = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=2)
        )
        thread = threading.Thread(target=uv.run, daemon=True)
        thread.start()
        assert wait_for_port("127.0.0.1", port, 20)
        endpoints = {
            e["branch"]: RelayEndpoint(e["host"], e["port"], e["unit_id"])
            for e in relays.endpoints
            if e["kind"] == "relay"
        }
        driver = ModbusRelayDriver(endpoints, timeout_s=1.0)
        app.state.dso.switching.executor.driver = driver  # the DSO operates the emulated relays over Modbus
        try:
            yield Server(f"http://127.0.0.1:{port}", app, relays)
        finally:
            uv.should_exit = True
            thread.join(timeout=10)
            driver.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def logged_in(browser: Any, server: Server, user: str) -> Any:
    page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.errors = errors
    page.goto(server.url + "/")
    assert page.title() == "peergrid DSO console"
    page.fill("#username", user)
    page.fill("#password", PASSWORD)
    page.click("#login-button")
    page.wait_for_selector("svg.oneline")
    return page


def test_a_wrong_password_shows_an_error_and_no_console(browser: Any, server: Server) -> None:
    page = browser.new_context().new_page()
    page.goto(server.url + "/")
    page.fill("#username", "olga")
    page.fill("#password", "not the password")
    page.click("#login-button")
    expect(page.locator("#login-error")).to_contain_text("wrong user name or password")
    assert page.is_hidden("#tabs")
    page.screenshot(path=str(ARTIFACTS / "login-refused.png"))
    page.context.close()


def test_an_operator_sees_the_live_feeder(browser: Any, server: Server) -> None:
    page = logged_in(browser, server, "olga")
    assert page.locator("circle.bus").count() == 33
    assert page.locator("rect.switch").count() == 37
    assert page.get_attribute('rect[data-branch="33"]', "data-closed") == "false"
    assert page.get_attribute('rect[data-branch="7"]', "data-closed") == "true"
    assert page.locator('circle.bus[data-status="ok"]').count() == 33
    assert "kW" in page.text_content("#losses")
    page.screenshot(path=str(ARTIFACTS / "feeder.png"), full_page=True)
    assert not page.errors
    page.context.close()


def test_an_approved_plan_moves_the_switches_live(browser: Any, server: Server) -> None:
    watcher = logged_in(browser, server, "olga")  # stays on the feeder: updates arrive over SSE
    ops = watcher.context.new_page()
    ops.goto(server.url + "/#operations")
    ops.click("#propose-plan")
    approve = ops.locator('tr[data-status="pending"] button.approve')
    approve.wait_for(timeout=90_000)
    plan_id = approve.get_attribute("data-plan")
    plan = next(p for p in server.console.ops.plans.values() if p.id == plan_id)
    ops.screenshot(path=str(ARTIFACTS / "plan-pending.png"), full_page=True)
    approve.click()
    ops.locator(f'tr[data-plan="{plan_id}"][data-status="executed"]').wait_for(timeout=30_000)
    for branch in plan.after["open_branches"]:
        watcher.locator(f'rect[data-branch="{branch}"][data-closed="false"]').wait_for(timeout=10_000)
    for action in plan.actions:
        state = "true" if action["close"] else "false"
        assert watcher.get_attribute(f'rect[data-branch="{action["branch"]}"]', "data-closed") == state
    positions = server.relays.positions()  # read from the emulated relays, not from the DSO's belief
    assert sorted(b for b, closed in positions.items() if not closed) == sorted(plan.after["open_branches"])
    ops.reload()
    ops.locator("#audit tbody tr").first.wait_for()
    assert ops.locator("#voltage-profile polyline").count() == 2
    assert "olga" in ops.text_content("#audit")
    watcher.screenshot(path=str(ARTIFACTS / "feeder-after-plan.png"), full_page=True)
    ops.screenshot(path=str(ARTIFACTS / "plan-executed.png"), full_page=True)
    assert not watcher.errors
    watcher.context.close()


def test_an_inclusion_proof_is_verified_in_the_browser(browser: Any, server: Server) -> None:
    deadline = time.monotonic() + 60
    while server.console.market.get("status") != "ready" and time.monotonic() < deadline:
        time.sleep(0.2)
    page = logged_in(browser, server, "vera")
    page.goto(server.url + "/#ledger")
    page.locator("#replicas a", has_text="mgmc").click()
    # the MGMC block with the most transactions, and its last one: a proof with a real audit path
    busiest = max(server.console.explorers["mgmc"].blocks(None, 20), key=lambda b: b["txs"])  # one page
    assert busiest["txs"] >= 3
    page.locator(f'#blocks a[data-height="{busiest["height"]}"]').click()
    expect(page.locator("h2", has_text=f"Block {busiest['height']} of mgmc")).to_be_visible()
    button = page.locator("button.verify").last
    txid = button.get_attribute("data-txid")
    button.click()
    result = page.locator(f'.proof-result[data-txid="{txid}"]')
    expect(result).to_contain_text("verified in the browser", timeout=10_000)
    assert "reaches tx_root" in result.text_content() and "path of 0 node" not in result.text_content()
    page.screenshot(path=str(ARTIFACTS / "ledger-proof.png"), full_page=True)
    assert server.console.explorers["mgmc"].head()["height"] > 20
    top = server.console.explorers["mgmc"].head()["height"]
    page.click("#older-blocks")  # the MGMC chain has more blocks than one page shows
    expect(page.locator(f'#blocks a[data-height="{top - 20}"]')).to_be_visible()
    expect(page.locator(f'#blocks a[data-height="{top}"]')).to_have_count(0)
    doc = page.evaluate(
        """async ([chain, txid]) => {
            const { checkProof } = await import('/console/static/proof.js');
            const doc = await (await fetch(`/console/api/ledger/${chain}/proof/${txid}`)).json();
            const good = await checkProof(doc);
            const flip = (h, i) => h.slice(0, i) + (h[i] === '0' ? '1' : '0') + h.slice(i + 1);
            const badTx = await checkProof({ ...doc, tx: flip(doc.tx, doc.tx.length - 2) });
            const badPath = await checkProof({ ...doc, path: [flip(doc.path[0], 0), ...doc.path.slice(1)] });
            const badIndex = await checkProof({ ...doc, index: doc.index ^ 1 });
            const badHeader = await checkProof(doc, { headerHash: '00'.repeat(32) });
            const badSeal = await checkProof({ ...doc, seal: flip(doc.seal, 10) });
            const badVote = await checkProof({ ...doc, certificate: flip(doc.certificate, doc.certificate.length - 2) });
            return { doc, good: good.ok, signatures: good.signatures,
                     bad: [badTx.ok, badPath.ok, badIndex.ok, badHeader.ok, badSeal.ok, badVote.ok] };
        }""",
        ["mgmc", txid],
    )
    assert doc["good"] and doc["signatures"], "Chromium's WebCrypto checks Ed25519 seals and commit votes"
    assert doc["bad"] == [False] * 6
    assert doc["doc"]["path"]
    assert check_proof(doc["doc"]).txid.hex() == txid  # the ledger's own checker agrees with the browser's
    page.context.close()


def test_a_viewer_cannot_operate_a_switch(browser: Any, server: Server) -> None:
    page = logged_in(browser, server, "vera")
    before = server.console.grid.switchgear.states()
    height = server.dso.chain.height
    page.click('rect[data-branch="12"]')
    expect(page.locator("#toast")).to_contain_text("viewers cannot operate switches")
    assert page.is_hidden("#switch-panel")
    status = page.evaluate(
        """async () => {
            const who = await (await fetch('/console/api/session')).json();
            const r = await fetch('/console/api/switches/12/preview', { method: 'POST',
              headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': who.csrf },
              body: JSON.stringify({ close: false }) });
            return [r.status, (await r.json()).detail];
        }"""
    )
    assert status[0] == 403 and "needs role operator" in status[1]
    page.screenshot(path=str(ARTIFACTS / "viewer-refused.png"), full_page=True)
    page.goto(server.url + "/#operations")
    page.locator("#readonly-note").wait_for()
    assert page.locator("#propose-plan").is_disabled()
    page.screenshot(path=str(ARTIFACTS / "viewer-operations.png"), full_page=True)
    assert server.console.grid.switchgear.states() == before
    assert server.dso.chain.height == height
    assert server.relays.positions() == before
    assert server.console.security.snapshot()["counts"]["forbidden"] >= 1
    page.context.close()


def test_an_operator_switches_by_hand_after_confirming(browser: Any, server: Server) -> None:
    page = logged_in(browser, server, "olga")
    closed = server.console.grid.switchgear.states()
    branch = next(b for b, is_closed in sorted(closed.items()) if not is_closed)
    page.click(f'rect[data-branch="{branch}"]')
    page.locator("#confirm-switch").wait_for()
    assert server.console.grid.switchgear.states()[branch] is False  # nothing happens before confirming
    page.screenshot(path=str(ARTIFACTS / "switch-confirm.png"), full_page=True)
    page.click("#confirm-switch")
    page.locator(f'rect[data-branch="{branch}"][data-closed="true"]').wait_for(timeout=10_000)
    assert server.relays.positions()[branch] is True
    assert server.console.ops.audit[-1]["user"] == "olga"
    page.context.close()


def test_the_market_view_plots_prices_per_round(browser: Any, server: Server) -> None:
    page = logged_in(browser, server, "vera")
    page.goto(server.url + "/#market")
    page.locator("#price-plot polyline").first.wait_for(timeout=60_000)
    assert page.locator("#trades tbody tr").count() >= 1
    assert page.locator("#costs tbody tr").count() == 6
    page.screenshot(path=str(ARTIFACTS / "market.png"), full_page=True)
    page.context.close()
