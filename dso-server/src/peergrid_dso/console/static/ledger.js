// Ledger explorer: both chains' heads and replicas, blocks, transactions, and in-browser proof checks.
import { api, dataTable, el, liveFeed, short } from "./api.js";
import { checkProof } from "./proof.js";

export class LedgerView {
  constructor(root) { this.root = root; this.chain = "dso"; this.height = null; }

  async start() {
    // a live feed of its own, as every view has, though this one shows nothing of it: the header's lines (the
    // DSO server's broker, the feed's own) and a session ended come by it (C3: the broker line was hidden here)
    this.source ??= liveFeed("/console/api/events");
    const heads = await api("/console/api/ledger");
    this.heads = heads.chains;
    const held = Object.keys(this.heads).filter((k) => this.heads[k].held);
    if (!held.includes(this.chain) || (!this.picked && this.heads[this.chain].height === 0)) {
      this.chain = held.find((k) => this.heads[k].height > 0) || held[0];
    }
    await this.render();
  }

  stop() { this.source?.close(); this.source = null; }

  async render() {
    const chains = Object.entries(this.heads);
    const page = 20;
    const before = this.before ? `&before=${this.before}` : "";
    const blocks = (await api(`/console/api/ledger/${this.chain}/blocks?limit=${page}${before}`)).blocks;
    const oldest = blocks.length ? blocks[blocks.length - 1].height : 1;
    const paging = el("div", {},
      this.before ? el("button", { type: "button", class: "secondary", id: "newer-blocks", onclick: () => { this.before = null; this.render(); } }, "newest") : "",
      " ",
      oldest > 1 ? el("button", { type: "button", class: "secondary", id: "older-blocks", onclick: () => { this.before = oldest; this.render(); } }, "older") : "");
    if (this.height === null && blocks.length) this.height = blocks[0].height;
    const detail = this.height ? await api(`/console/api/ledger/${this.chain}/blocks/${this.height}`) : null;
    this.root.replaceChildren(
      el("h2", {}, "Ledger"),
      el("div", { class: "card" }, el("h2", {}, "Chains and replicas"),
        dataTable({ id: "replicas" }, ["chain", "replica", "height", "head", "agrees"],
          chains.flatMap(([name, c]) => c.replicas.map((r) => el("tr", {},
            el("td", {}, c.held ? el("a", { href: "#ledger", onclick: (e) => { e.preventDefault(); this.chain = name; this.picked = true; this.height = null; this.before = null; this.render(); } }, `${name} (${c.chain})`)
                                : `${c.chain} (not held by this server)`),
            el("td", {}, r.node), el("td", { class: "num" }, r.height), el("td", { class: "hash" }, r.head ? short(r.head, 16) : "(height only)"),
            el("td", {}, !c.agree ? el("span", { class: "failed" }, "NO — heads differ") : r.behind ? `${r.behind} block(s) behind` : "yes")))))),
      el("div", { class: "grid2" },
        el("div", { class: "card" }, el("h2", {}, detail ? `Block ${detail.height} of ${this.chain}` : "No blocks yet"),
          detail ? this.blockDetail(detail) : ""),
        el("div", { class: "card" }, el("h2", {}, `Blocks (${this.chain})`),
          dataTable({ id: "blocks" }, ["height", "txs", "hash"],
            blocks.map((b) => el("tr", {},
              el("td", {}, el("a", { href: "#ledger", "data-height": b.height, onclick: (e) => { e.preventDefault(); this.height = b.height; this.render(); } }, b.height)),
              el("td", { class: "num" }, b.txs), el("td", { class: "hash" }, short(b.hash))))), paging)));
  }

  blockDetail(d) {
    return el("div", {},
      el("table", {}, el("tbody", {},
        ["hash", "prev", "tx_root", "state_root", "proposer"].map((k) => el("tr", {}, el("th", {}, k), el("td", { class: "hash" }, d[k]))),
        el("tr", {}, el("th", {}, "time"), el("td", {}, d.time > 1e12 ? new Date(d.time).toISOString() : `${d.time} (logical clock)`)),
        el("tr", {}, el("th", {}, "commit signers"), el("td", {}, d.commit_signers.length)))),
      dataTable({ id: "txs" }, ["txid", "kind", "body", "proof"],
        d.transactions.map((tx) => {
          const out = el("span", { class: "proof-result", "data-txid": tx.txid });
          const button = el("button", { type: "button", class: "secondary verify", "data-txid": tx.txid, onclick: async () => {
            out.textContent = "checking…";
            try {
              const doc = await api(`/console/api/ledger/${this.chain}/proof/${tx.txid}`);
              const r = await checkProof(doc, { headerHash: d.hash });
              out.className = `proof-result ${r.ok ? "verified" : "failed"}`;
              out.textContent = r.ok ? `verified in the browser: ${r.steps.join("; ")}` : `FAILED: ${r.why}`;
            } catch (e) { out.className = "proof-result failed"; out.textContent = `FAILED: ${e.message}`; }
          } }, "verify proof");
          return el("tr", {}, el("td", { class: "hash" }, short(tx.txid)), el("td", {}, tx.kind),
            el("td", {}, el("code", {}, JSON.stringify(tx.body).slice(0, 140))), el("td", {}, button, " ", out));
        })));
  }
}
