// Transaction inclusion proofs checked in the browser with WebCrypto, the same rules as the ledger's proof.py:
// RFC 6962 Merkle tree (leaf = SHA-256(0x00 || tx), node = SHA-256(0x01 || left || right); ledger/merkle.py),
// the header's tx_root read from the canonical CBOR header bytes, the header hash domain-separated as
// SHA-256(CBOR(["peergrid/1", "header", chain]) || header) (ledger/hashing.py), and - where the browser has
// WebCrypto Ed25519 - the proposer's seal and the commit certificate's votes over
// SHA-256(CBOR(["peergrid/1", "vote", chain]) || CBOR([height, round, step, block hash])) (ledger/votes.py).
// Like proof.check_proof without an authority set, it does not know who the authorities are. Trusts nothing
// from the server except the bytes it checks: the verdict comes from recomputing.

export const hex = (bytes) => [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
export function unhex(s) {
  if (typeof s !== "string" || s.length % 2 || /[^0-9a-f]/i.test(s)) throw new Error("not hex");
  return Uint8Array.from(s.match(/../g) || [], (h) => parseInt(h, 16));
}
const concat = (...parts) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
};
const equal = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

export async function sha256(...parts) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", concat(...parts)));
}
export const leafHash = (leaf) => sha256(Uint8Array.of(0), leaf);
export const nodeHash = (l, r) => sha256(Uint8Array.of(1), l, r);

// RFC 9162 §2.1.3.2 verification, as merkle.verify_inclusion.
export async function verifyInclusion(leaf, index, size, path, root) {
  if (!(Number.isInteger(index) && Number.isInteger(size) && index >= 0 && index < size) || path.length > 64) return false;
  let fn = index, sn = size - 1;
  let running = await leafHash(leaf);
  for (const sibling of path) {
    if (sibling.length !== 32 || sn === 0) return false;
    if (fn & 1 || fn === sn) {
      running = await nodeHash(sibling, running);
      if (!(fn & 1)) while (fn && !(fn & 1)) { fn >>= 1; sn >>= 1; }
    } else {
      running = await nodeHash(running, sibling);
    }
    fn >>= 1; sn >>= 1;
  }
  return sn === 0 && equal(running, root);
}

// A small canonical-CBOR reader: unsigned/negative ints, byte and text strings, arrays, maps, false/true/null.
export function cborDecode(bytes) {
  let i = 0;
  const need = (n) => { if (i + n > bytes.length) throw new Error("truncated CBOR"); };
  const length = (info) => {
    if (info < 24) return info;
    const n = { 24: 1, 25: 2, 26: 4, 27: 8 }[info];
    if (!n) throw new Error("unsupported CBOR length");
    need(n);
    let v = 0;
    for (let k = 0; k < n; k++) v = v * 256 + bytes[i++];
    return v;
  };
  const item = () => {
    need(1);
    const head = bytes[i++], major = head >> 5, info = head & 31;
    if (major === 7) return { 20: false, 21: true, 22: null }[info] ?? (() => { throw new Error("CBOR simple value"); })();
    const n = length(info);
    switch (major) {
      case 0: return n;
      case 1: return -1 - n;
      case 2: need(n); i += n; return bytes.slice(i - n, i);
      case 3: need(n); i += n; return new TextDecoder("utf-8", { fatal: true }).decode(bytes.slice(i - n, i));
      case 4: return Array.from({ length: n }, item);
      case 5: { const m = {}; for (let k = 0; k < n; k++) { const key = item(); m[key] = item(); } return m; }
      default: throw new Error("CBOR tag");
    }
  };
  const value = item();
  if (i !== bytes.length) throw new Error("trailing bytes after CBOR value");
  return value;
}

function cborHead(major, n) {
  if (n < 24) return Uint8Array.of((major << 5) | n);
  if (n < 0x100) return Uint8Array.of((major << 5) | 24, n);
  if (n < 0x10000) return Uint8Array.of((major << 5) | 25, n >> 8, n & 255);
  if (n < 0x100000000) return Uint8Array.of((major << 5) | 26, n >>> 24, (n >> 16) & 255, (n >> 8) & 255, n & 255);
  throw new Error("integer too large for this encoder");
}

// Canonical CBOR for the few shapes hashed here: non-negative ints, text, bytes, arrays.
export function cborEncode(v) {
  if (typeof v === "number" && Number.isInteger(v) && v >= 0) return cborHead(0, v);
  if (typeof v === "string") { const b = new TextEncoder().encode(v); return concat(cborHead(3, b.length), b); }
  if (v instanceof Uint8Array) return concat(cborHead(2, v.length), v);
  if (Array.isArray(v)) return concat(cborHead(4, v.length), ...v.map(cborEncode));
  throw new Error("cannot encode this value");
}

const domain = (name, chain) => cborEncode(["peergrid/1", name, chain]);
export const headerHash = (chain, headerBytes) => sha256(domain("header", chain), headerBytes);
export const voteDigest = (chain, height, round, step, blockHash) =>
  sha256(domain("vote", chain), cborEncode([height, round, step, blockHash]));

// true / false, or null when this browser's WebCrypto has no Ed25519.
export async function ed25519Verify(publicKey, message, signature) {
  let key;
  try { key = await crypto.subtle.importKey("raw", publicKey, { name: "Ed25519" }, false, ["verify"]); }
  catch (e) { if (e.name === "NotSupportedError") return null; return false; }
  try { return await crypto.subtle.verify({ name: "Ed25519" }, key, signature, message); } catch { return false; }
}

// Check a peergrid-tx-inclusion-v1 document; `expected` carries what the explorer showed (header hash, txid).
export async function checkProof(doc, expected = {}) {
  const steps = [];
  const fail = (why) => ({ ok: false, why, steps });
  if (!doc || doc.type !== "peergrid-tx-inclusion-v1") return fail("not a peergrid inclusion proof");
  let header, tx, path;
  try {
    header = cborDecode(unhex(doc.header));
    tx = unhex(doc.tx);
    path = doc.path.map(unhex);
  } catch (e) { return fail(`malformed proof: ${e.message}`); }
  if (!(header.tx_root instanceof Uint8Array) || typeof header.chain !== "string") return fail("header has no tx_root");
  const hh = await headerHash(header.chain, unhex(doc.header));
  steps.push(`header hash recomputed: ${hex(hh).slice(0, 16)}…`);
  if (expected.headerHash && hex(hh) !== expected.headerHash) return fail("header hash differs from the block shown");
  if (header.height !== doc.height) return fail("header height differs from the proof's");
  const ok = await verifyInclusion(tx, doc.index, doc.tree_size, path, header.tx_root);
  steps.push(`Merkle path of ${path.length} node(s) from leaf ${doc.index} of ${doc.tree_size}`);
  if (!ok) return fail("Merkle path does not lead to the header's tx_root");
  steps.push(`reaches tx_root ${hex(header.tx_root).slice(0, 16)}…`);
  let seal, cert;
  try { seal = unhex(doc.seal); cert = cborDecode(unhex(doc.certificate)); }
  catch (e) { return fail(`malformed seal or certificate: ${e.message}`); }
  const sealOk = await ed25519Verify(header.proposer, await voteDigest(header.chain, header.height, header.round, "propose", hh), seal);
  if (sealOk === null) {
    steps.push("signatures not checked: this browser has no WebCrypto Ed25519");
    return { ok: true, why: null, steps, chain: header.chain, height: header.height, signatures: false };
  }
  if (!sealOk) return fail("the proposer's seal does not verify");
  if (!(cert.block instanceof Uint8Array) || hex(cert.block) !== hex(hh) || cert.height !== header.height) {
    return fail("commit certificate is for another block");
  }
  if (!Array.isArray(cert.votes) || !cert.votes.length) return fail("commit certificate holds no votes");
  const commit = await voteDigest(header.chain, header.height, cert.round, "commit", hh);
  for (const [signer, sig] of cert.votes) {
    if (!(await ed25519Verify(signer, commit, sig))) return fail("a commit vote does not verify");
  }
  steps.push(`proposer seal and ${cert.votes.length} commit signature(s) verified (Ed25519)`);
  return { ok: true, why: null, steps, chain: header.chain, height: header.height, signatures: true };
}
