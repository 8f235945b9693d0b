"""The console of a running closed-loop testbed in headless Chromium (Debian's package, driven by Playwright).

One `peergrid-testbed` for the module: firmware-sim with the ieee33 scenario's devices and feeder relays, six
MGMC edge daemons trading on the MGMC chain, and ONE DSO process - `peergrid-dso serve` with its `loop:`
section - that is the loop's DSO node and serves this console. Users of each role are put in the testbed's
user file before it starts. An operator sees the live feeder (switch states as firmware-sim's relays report
them over Modbus), a market interval the MGMCs bargained (rounds and trades from the DSO's MGMC-chain
replica), approves a reconfiguration plan and sees the relays change; a live DSO-chain transaction's
inclusion proof is checked in the browser; an operator closes a tie by hand after confirming; a viewer fails
to operate a switch. Screenshots go to
test-artifacts/console/. The loop reconfigures only when insecure (`--dso-reconfigure-every 0`), so the
operator's plan is the only scheduled change of topology while the test runs.

The module is in the "system" xdist_group, whose worker runs every lab one at a time: in the console-browser group
its lab started beside the system group's day-ahead lab and the Ansible converge at the suite's start, and none of
its six MGMCs was enrolled by t0 (ci28b, 2026-12-08 01:05 UTC: its DSO node ready after 13.1 s, t0 moved 7.2 s to
give the MGMCs their 16 s, which they did not make). Its lead is 45 s, not the testbed's 25, for the same start:
the MGMCs start once the DSO node is ready and have the rest of the lead to enrol.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from console.helpers import PASSWORD, USERS, browser_tests, fast_hasher
from peergrid_dso.auth.users import UserStore
from peergrid_ledger.tied import tied_popen
from peergrid_sim.broker import wait_for_port

expect, pytestmark = browser_tests(needs_mosquitto=True, group="system")

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"
SCENARIO = Path(__file__).resolve().parents[2] / "firmware-sim" / "scenarios" / "ieee33.yaml"
INTERVAL_S = 6.0
LEAD_S = 45.0  # (module docstring)


def _wait(what: str, ready: Callable[[], Any], timeout: float, bed: LiveTestbed | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = ready()
        if found:
            return found
        if bed is not None and bed.process.poll() is not None:
            raise AssertionError(
                f"the testbed exited ({bed.process.returncode}) waiting for {what}: {bed.tail()}"
            )
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}" + (f": {bed.tail()}" if bed else ""))


class LiveTestbed:
    def __init__(self, workdir: Path, port: int, process: subprocess.Popen[bytes]) -> None:
        self.workdir, self.process = workdir, process
        self.set_port(port)

    def set_port(self, port: int) -> None:
        self.port, self.url = port, f"http://127.0.0.1:{port}"

    def tail(self) -> str:
        out = self.workdir / "testbed.out"
        return out.read_text(errors="replace")[-1500:] if out.exists() else ""

    def records(self) -> list[dict[str, Any]]:
        path = self.workdir / "records" / "dso.jsonl"
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        return [json.loads(line) for line in lines if line.endswith("}")]

    def relays(self) -> dict[int, bool]:
        """Branch -> closed, read from firmware-sim's relays over Modbus (not the DSO's belief)."""
        from peergrid_dso.drivers.relay_modbus import ModbusRelayDriver
        from peergrid_dso.drivers.relay_tls import relay_endpoints

        entries = json.loads((self.workdir / "endpoints.json").read_text(encoding="utf-8"))
        endpoints = relay_endpoints(entries, None)
        driver = ModbusRelayDriver(endpoints, timeout_s=2.0)
        try:
            return {branch: bool(driver.status(branch).closed) for branch in sorted(endpoints)}
        finally:
            driver.close()


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveTestbed]:
    workdir = tmp_path_factory.mktemp("console-testbed")
    store = UserStore(workdir / "config" / "console-users.json", hasher=fast_hasher())
    for name, role in USERS.items():
        store.add(name, role, PASSWORD)
    argv = [str(Path(sys.executable).parent / "peergrid-testbed"), "--scenario", str(SCENARIO),
            "--workdir", str(workdir), "--http-port", "0", "--interval-s", str(INTERVAL_S),
            "--dso-reconfigure-every", "0", "--duration", "400", "--lead-s", str(LEAD_S)]  # fmt: skip
    with (workdir / "testbed.out").open("wb") as out:
        process = tied_popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    running = LiveTestbed(workdir, 0, process)
    try:
        # the DSO server binds any free port; the testbed names it once that process listens on it
        ports = workdir / "ports.json"
        found = _wait(
            "the DSO console", lambda: ports.exists() and json.loads(ports.read_text()), 120, running
        )
        running.set_port(int(found["dso_http"]))
        assert wait_for_port("127.0.0.1", running.port, 5)
        yield running
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)  # the testbed stops every process it started
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


@pytest.fixture(scope="module")
def browser(browser: Any) -> Any:
    """conftest's Chromium, with the screenshots' folder made."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return browser


def logged_in(browser: Any, bed: LiveTestbed, user: str, tab: str = "") -> Any:
    page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.errors = errors
    page.goto(bed.url + "/" + tab)
    page.fill("#username", user)
    page.fill("#password", PASSWORD)
    page.click("#login-button")
    page.wait_for_selector("#tabs:not([hidden])")
    return page


def fetch(page: Any, path: str) -> Any:
    return page.evaluate("async (path) => (await fetch(path)).json()", path)


def test_an_operator_sees_the_live_feeder(browser: Any, bed: LiveTestbed) -> None:
    _wait("the loop's first interval", bed.records, 150, bed)
    page = logged_in(browser, bed, "olga")
    page.wait_for_selector("svg.oneline")
    assert page.locator("circle.bus").count() == 33
    assert page.locator("rect.switch").count() == 37
    expect(page.locator("#loop-interval")).to_contain_text("interval", timeout=30_000)  # the loop's verdict
    relays = bed.relays()
    assert len(relays) == 37
    for branch in (7, 9, 14, 33, 37):  # ties and branches the reconfiguration moves
        shown = page.get_attribute(f'rect[data-branch="{branch}"]', "data-closed")
        assert shown == str(relays[branch]).lower(), (
            f"branch {branch}: console {shown}, relay {relays[branch]}"
        )
    health = fetch(page, "/api/health")
    assert health["status"] == "ok" and health["loop"]["running"], health  # the DSO node runs in this server
    feeder = fetch(page, "/console/api/feeder")
    assert {m["mg"] for m in feeder["mgs"]} == {f"mg{i}" for i in range(1, 7)}
    assert any(abs(m["p_kw"]) > 0 for m in feeder["mgs"]), "MG injections come from the DSO chain"
    page.screenshot(path=str(ARTIFACTS / "live-feeder.png"), full_page=True)
    assert not page.errors
    page.context.close()


def test_the_market_view_shows_the_mgmcs_bargaining(browser: Any, bed: LiveTestbed) -> None:
    page = logged_in(browser, bed, "vera", "#market")

    def traded() -> Any:
        market = fetch(page, "/console/api/market")
        return market.get("status") == "ready" and [i for i in market["intervals"] if i["trades"]]

    intervals = _wait("an interval with agreed trades on the MGMC chain", traded, 120, bed)
    assert intervals[0]["rounds"] >= 1 and intervals[0]["prices"]
    page.reload()
    page.select_option("#interval", str(intervals[0]["interval"]))
    page.locator("#price-plot polyline").first.wait_for(timeout=20_000)
    assert page.locator("#trades tbody tr").count() == len(intervals[0]["trades"])
    assert "MGMC chain" in page.text_content("#market")
    page.screenshot(path=str(ARTIFACTS / "live-market.png"), full_page=True)
    assert not page.errors
    page.context.close()


def test_an_approved_plan_moves_the_relays(browser: Any, bed: LiveTestbed) -> None:
    watcher = logged_in(browser, bed, "olga")  # stays on the feeder: updates arrive over SSE
    watcher.wait_for_selector("svg.oneline")
    ops = watcher.context.new_page()
    ops.goto(bed.url + "/#operations")
    ops.click("#propose-plan")
    approve = ops.locator('tr[data-status="pending"] button.approve')
    approve.wait_for(timeout=60_000)
    plan_id = approve.get_attribute("data-plan")
    plan = next(p for p in fetch(ops, "/console/api/operations")["plans"] if p["id"] == plan_id)
    assert plan["actions"], "the loop keeps the initial topology, so the optimum needs switching"
    ops.screenshot(path=str(ARTIFACTS / "live-plan-pending.png"), full_page=True)
    approve.click()
    ops.locator(f'tr[data-plan="{plan_id}"][data-status="executed"]').wait_for(timeout=60_000)
    target = sorted(plan["after"]["open_branches"])
    relays = bed.relays()
    assert sorted(b for b, closed in relays.items() if not closed) == target  # read back from firmware-sim
    for branch in target:
        watcher.locator(f'rect[data-branch="{branch}"][data-closed="false"]').wait_for(timeout=15_000)
    # the page (its feed, or its fallback poll) can show the plan executed before the console sealed its
    # operator_action (status first, then the seal, which waits a final block: the POST answers after both):
    # wait for the chain entry
    executed = _wait(
        f"{plan_id}'s chain entry",
        lambda: next(
            (p for p in fetch(ops, "/console/api/operations")["plans"] if p["id"] == plan_id and p["chain"]),
            None,
        ),
        30,
        bed,
    )
    assert executed["approved_by"] == "olga" and executed["status"] == "executed"
    watcher.screenshot(path=str(ARTIFACTS / "live-feeder-after-plan.png"), full_page=True)
    ops.screenshot(path=str(ARTIFACTS / "live-plan-executed.png"), full_page=True)
    assert not watcher.errors
    watcher.context.close()


def test_an_operator_closes_a_tie_by_hand_after_confirming(browser: Any, bed: LiveTestbed) -> None:
    page = logged_in(browser, bed, "olga")
    page.wait_for_selector("svg.oneline")
    relays = bed.relays()
    tie = next(b for b in (33, 34, 35, 36, 37) if not relays[b])
    page.click(f'rect[data-branch="{tie}"]')
    page.locator("#confirm-switch").wait_for(timeout=30_000)
    assert bed.relays()[tie] is False  # nothing moves before the operator confirms
    page.click("#confirm-switch")
    page.locator(f'rect[data-branch="{tie}"][data-closed="true"]').wait_for(timeout=30_000)
    assert bed.relays()[tie] is True
    # the relay's new position reaches the page over SSE before the action is sealed on the chain and
    # audited (the POST answers after both): wait for the audit entry, newest first
    audit = _wait(
        f"the audit entry of closing branch {tie}",
        lambda: [
            a
            for a in fetch(page, "/console/api/operations")["audit"][:1]
            if f"close branch {tie}" in a["action"]
        ],
        30,
        bed,
    )
    assert audit[0]["user"] == "olga"
    page.screenshot(path=str(ARTIFACTS / "live-manual-switch.png"), full_page=True)
    page.context.close()


def test_a_live_dso_chain_proof_is_verified_in_the_browser(browser: Any, bed: LiveTestbed) -> None:
    page = logged_in(browser, bed, "vera", "#ledger")
    page.wait_for_selector("#replicas")
    heads = fetch(page, "/console/api/ledger")["chains"]
    assert heads["dso"]["held"] and heads["mgmc"]["held"] and heads["dso"]["agree"]
    assert heads["dso"]["height"] > 0 and len(heads["dso"]["replicas"]) == 7  # the DSO and six MGMCs
    expect(page.locator("h2", has_text="Blocks (dso)")).to_be_visible()  # the DSO chain is shown first
    # the busiest block the page lists (the chain grows while we look: pick from the rendered rows); between
    # intervals the DSO chain seals empty blocks, so page back until a listed block holds transactions
    script = "rows => rows.map(r => [Number(r.cells[0].textContent), Number(r.cells[1].textContent)])"
    for _ in range(20):
        rows = page.eval_on_selector_all("#blocks tbody tr", script)
        height, txs = max(rows, key=lambda r: r[1])
        if txs >= 1:
            break
        page.click("#older-blocks")
        expect(page.locator(f'#blocks a[data-height="{rows[0][0]}"]')).to_have_count(0)
    assert txs >= 1, "no DSO-chain transaction in the last 400 blocks"
    page.locator(f'#blocks a[data-height="{height}"]').click()
    expect(page.locator("h2", has_text=f"Block {height} of dso")).to_be_visible()
    button = page.locator("button.verify").last
    txid = button.get_attribute("data-txid")
    button.click()
    result = page.locator(f'.proof-result[data-txid="{txid}"]')
    expect(result).to_contain_text("verified in the browser", timeout=15_000)
    page.screenshot(path=str(ARTIFACTS / "live-dso-proof.png"), full_page=True)
    assert not page.errors
    page.context.close()


def test_a_viewer_cannot_operate_a_switch(browser: Any, bed: LiveTestbed) -> None:
    page = logged_in(browser, bed, "vera")
    page.wait_for_selector("svg.oneline")
    before = bed.relays()
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
    assert bed.relays() == before
    page.screenshot(path=str(ARTIFACTS / "live-viewer-refused.png"), full_page=True)
    page.context.close()
