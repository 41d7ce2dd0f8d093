// The local chain benchmark's counterpart on @ton/sandbox, for comparison with
// `cargo run --release -p cocoon-localnet --example chain_bench` (crates/localnet/examples/chain_bench.rs).
//
//   npm run bench                      default budget: 3 s per measurement
//   npm run bench -- --secs 5
//
// What it measures, the same way the Rust program does (wall time, one input at a time):
// - wallet v4r2 transfers: pre-signed external messages to a funded WalletContractV4 (same mnemonic as the
//   Rust side), one 0.001 TON transfer each, delivered with `bc.sendMessage(external(...))`;
// - signed charges: tests/scenario-full-cycle.json replayed up to its first charge, then
//   `ext_client_charge_signed` with cumulative tokens 1, 2, 3, ... injected from the relayer;
// - get-method latency p50/p99 (`bc.runGetMethod`) on the client, the root and the wallet;
// - the full-cycle scenario (all its injected messages) from `Blockchain.create()`.
// Sandbox has no persistence, so there is one path. Output: a markdown table on stdout.
//
// What must not live here: assertions about contract behaviour (tests/ does that); this only checks that
// every timed message succeeded, so a broken run cannot print a fast number.

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { Blockchain, internal } from '@ton/sandbox';
import { Address, Cell, external, toNano, SendMode, internal as coreInternal } from '@ton/core';
import { mnemonicToPrivateKey } from '@ton/crypto';
import { WalletContractV4 } from '@ton/ton';
import { OP, proxyKeys, signedTokens } from '../tests/lib/cocoon.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const scenario = JSON.parse(fs.readFileSync(path.resolve(here, '..', 'tests', 'scenario-full-cycle.json'), 'utf8'));
const PHRASE = 'fancy carpet hello mandate penalty trial consider property top vicious exit rebuild tragic profit urban major total month holiday sudden rib gather media vicious';
const NOW = 1_760_000_000;
const BATCH = 500;
const MAX_INPUTS = 200_000;
const MAX_GETS = 20_000;
const MAX_CYCLES = 200;

function parseArgs() {
    let secs = 3;
    const a = process.argv.slice(2);
    for (let i = 0; i < a.length; i += 2) {
        if (a[i] === '--secs') secs = Number(a[i + 1]);
        else throw new Error(`unknown argument ${a[i]} (use --secs N)`);
    }
    if (!(secs >= 0.1 && secs <= 600)) throw new Error('--secs must be 0.1..600');
    return { secs };
}

const steps = scenario.steps.map((s) => ({
    name: s.name,
    now: s.now,
    expectedTxs: s.transactions.length,
    msg: internal({
        from: Address.parse(s.message.src),
        to: Address.parse(s.message.dest),
        value: BigInt(s.message.value),
        bounce: s.message.bounce,
        body: Cell.fromBase64(s.message.body),
        stateInit: s.message.init
            ? { code: Cell.fromBase64(s.message.init.code), data: Cell.fromBase64(s.message.init.data) }
            : undefined,
    }),
}));

const rate = (n, ms) => {
    const r = n / (ms / 1000);
    return r >= 100 ? r.toFixed(0) : r.toFixed(1);
};
const fmtDur = (ms) => (ms < 1 ? `${(ms * 1000).toFixed(1)} µs` : `${ms.toFixed(2)} ms`);
const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.round((sorted.length - 1) * p))] ?? 0;
const median = (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];

function computeExit(tx) {
    const d = tx.description;
    if (d.type !== 'generic' || d.computePhase.type !== 'vm') return undefined;
    return d.computePhase.exitCode;
}

async function benchWallet(secs) {
    const bc = await Blockchain.create();
    bc.now = NOW;
    const kp = await mnemonicToPrivateKey(PHRASE.split(' '));
    const wallet = WalletContractV4.create({ workchain: 0, publicKey: kp.publicKey });
    await bc.sendMessage(internal({ from: new Address(-1, Buffer.alloc(32, 0xff)), to: wallet.address, value: toNano('1000000'), bounce: false }));
    const dest = new Address(0, Buffer.alloc(32, 0x42));
    const ext = (seqno, value, init) => {
        const body = wallet.createTransfer({
            seqno,
            secretKey: kp.secretKey,
            sendMode: SendMode.PAY_GAS_SEPARATELY | SendMode.IGNORE_ERRORS,
            timeout: NOW + 1_000_000,
            messages: [coreInternal({ to: dest, value, bounce: false })],
        });
        return external({ to: wallet.address, init, body });
    };
    await bc.sendMessage(ext(0, toNano('1'), wallet.init));
    let inputs = 0, txs = 0, elapsed = 0, seqno = 1;
    while (elapsed < secs * 1000 && inputs < MAX_INPUTS) {
        const batch = [];
        for (let i = 0; i < BATCH; i++) batch.push(ext(seqno + i, toNano('0.001')));
        seqno += BATCH;
        const t0 = performance.now();
        for (const m of batch) {
            const r = await bc.sendMessage(m);
            if (computeExit(r.transactions[0]) !== 0) throw new Error(`wallet transfer ${inputs + 1} failed`);
            txs += r.transactions.length;
            inputs += 1;
            if (performance.now() - t0 + elapsed >= secs * 1000) break;
        }
        elapsed += performance.now() - t0;
    }
    return { bc, wallet: wallet.address, inputs, txs, elapsed };
}

async function benchCharges(secs) {
    const bc = await Blockchain.create();
    bc.now = scenario.startTime;
    const first = steps.findIndex((s) => s.name.includes('charge_signed'));
    for (const s of steps.slice(0, first)) {
        bc.now = s.now;
        await bc.sendMessage(s.msg);
    }
    const keys = proxyKeys();
    if (keys.publicKey.toString('hex') !== scenario.proxyPublicKey) throw new Error('proxy key mismatch');
    const client = Address.parse(scenario.accounts.client);
    const relayer = Address.parse(scenario.accounts.relayer);
    const value = BigInt(scenario.steps[first].message.value);
    let inputs = 0, txs = 0, elapsed = 0, tokens = 0n;
    while (elapsed < secs * 1000 && inputs < MAX_INPUTS) {
        const batch = [];
        for (let i = 0; i < BATCH; i++) {
            tokens += 1n;
            const body = signedTokens(OP.clientChargeSigned, tokens, client, relayer, keys.secretKey, tokens);
            batch.push(internal({ from: relayer, to: client, value, bounce: true, body }));
        }
        const t0 = performance.now();
        for (const m of batch) {
            const r = await bc.sendMessage(m);
            if (computeExit(r.transactions[0]) !== 0) throw new Error(`charge ${inputs + 1} failed`);
            txs += r.transactions.length;
            inputs += 1;
            if (performance.now() - t0 + elapsed >= secs * 1000) break;
        }
        elapsed += performance.now() - t0;
    }
    return { bc, client, root: Address.parse(scenario.accounts.root), inputs, txs, elapsed };
}

async function benchGet(bc, address, method, secs) {
    const samples = [];
    const deadline = performance.now() + secs * 1000;
    while (performance.now() < deadline && samples.length < MAX_GETS) {
        const t0 = performance.now();
        const r = await bc.runGetMethod(address, method);
        samples.push(performance.now() - t0);
        if (r.exitCode !== 0 && r.exitCode !== 1) throw new Error(`${method} exited ${r.exitCode}`);
    }
    return samples.sort((a, b) => a - b);
}

async function benchCycle(secs) {
    const runs = [];
    const deadline = performance.now() + secs * 1000;
    while ((runs.length === 0 || performance.now() < deadline) && runs.length < MAX_CYCLES) {
        const t0 = performance.now();
        const bc = await Blockchain.create();
        const created = performance.now() - t0;
        const t1 = performance.now();
        for (const s of steps) {
            bc.now = s.now;
            const r = await bc.sendMessage(s.msg);
            if (r.transactions.length !== s.expectedTxs) {
                throw new Error(`${s.name}: ${r.transactions.length} transactions, scenario has ${s.expectedTxs}`);
            }
        }
        runs.push({ created, replay: performance.now() - t1 });
    }
    return runs;
}

async function main() {
    const { secs } = parseArgs();
    const path_ = '@ton/sandbox 0.41.0';
    const rows = [];
    console.error('sandbox: wallet transfers');
    const w = await benchWallet(secs);
    rows.push(['(a) wallet v4r2 transfers (external, signature checked)', w.inputs,
        `**${rate(w.inputs, w.elapsed)} transfers/s** (${rate(w.txs, w.elapsed)} tx/s)`]);
    console.error('sandbox: signed charges');
    const c = await benchCharges(secs);
    rows.push(['(b) signed charges on a client contract (proxy signature checked)', c.inputs,
        `**${rate(c.inputs, c.elapsed)} charges/s** (${rate(c.txs, c.elapsed)} tx/s)`]);
    console.error('sandbox: get-methods');
    for (const [who, bc, addr, method] of [
        ['client', c.bc, c.client, 'get_cocoon_client_data'],
        ['root', c.bc, c.root, 'get_cocoon_data'],
        ['wallet', w.bc, w.wallet, 'seqno'],
    ]) {
        const s = await benchGet(bc, addr, method, secs / 3);
        rows.push([`(c) get-method \`${method}\` (${who})`, s.length, `p50 ${fmtDur(pct(s, 0.5))} / p99 ${fmtDur(pct(s, 0.99))}`]);
    }
    console.error('sandbox: full cycle');
    const runs = await benchCycle(secs);
    const total = median(runs.map((r) => r.created + r.replay));
    rows.push([`(d) full-cycle scenario, ${steps.length} messages`, runs.length,
        `**${fmtDur(total)}** median wall (new chain ${fmtDur(median(runs.map((r) => r.created)))} + replay ${fmtDur(median(runs.map((r) => r.replay)))})`]);

    console.log('| measurement | path | n | result |');
    console.log('|---|---|---:|---|');
    for (const [what, n, result] of rows) console.log(`| ${what} | ${path_} | ${n} | ${result} |`);
}

main().catch((e) => {
    console.error(`bench-sandbox: ${e.stack ?? e}`);
    process.exit(1);
});
