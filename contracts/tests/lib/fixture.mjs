// A small Cocoon network on @ton/sandbox: root, one proxy, one client and one worker contract, plus the
// treasury wallets that own them, and helpers to send messages and inspect transactions.
//
// What lives here: setup and plumbing shared by all test files (and scripts/gas-report.mjs). Tests take a
// snapshot after setup and restore it per test, so each test starts from the same state cheaply.
// What must not: assertions about contract behaviour (those belong in the test files).

import assert from 'node:assert/strict';
import { Blockchain, internal } from '@ton/sandbox';
import { flattenTransaction } from '@ton/test-utils';
import { Cell, toNano } from '@ton/core';
import {
    loadCode, defaultParams, paramsCell, rootData, proxyData, clientData, workerData, stateInit, proxyKeys, body,
} from './cocoon.mjs';

/** Unix time the sandbox starts at (fixed, so close delays and gas are reproducible). */
export const START_TIME = 1_760_000_000;

export const CODES = {
    root: loadCode('root'),
    proxy: loadCode('proxy'),
    client: loadCode('client'),
    worker: loadCode('worker'),
};

/**
 * Builds the network. Nothing is deployed except the root (`deployRoot`, default true) and the proxy
 * (`deployProxy`, default true, with `proxyStake` staked). Client and worker contracts are only computed;
 * the tests that need them deploy them.
 */
export async function createNetwork({ params: overrides = {}, deployRoot = true, deployProxy = true, proxyStake = toNano('5') } = {}) {
    const bc = await Blockchain.create();
    bc.now = START_TIME;
    const w = {
        rootOwner: await bc.treasury('root-owner'),
        proxyOwner: await bc.treasury('proxy-owner'),
        clientOwner: await bc.treasury('client-owner'),
        workerOwner: await bc.treasury('worker-owner'),
        relayer: await bc.treasury('relayer'),
        stranger: await bc.treasury('stranger'),
    };
    const keys = proxyKeys();
    const wrongKeys = proxyKeys('not-the-proxy-key');
    // The key manager's signing key (root_add_public_key_signed); the root learns it by change_key_manager.
    const keyManagerKeys = proxyKeys('cocoon-key-manager');
    const params = defaultParams(overrides);

    const rootParams = paramsCell(params, { proxy: CODES.proxy, worker: CODES.worker, client: CODES.client });
    const proxyParams = paramsCell(params, { worker: CODES.worker, client: CODES.client });
    const leafParams = paramsCell(params);

    const root = stateInit(CODES.root, rootData({ owner: w.rootOwner.address, params: rootParams, structVersion: params.structVersion }));
    const proxy = stateInit(
        CODES.proxy,
        proxyData({ owner: w.proxyOwner.address, publicKey: keys.publicKey, root: root.address, params: proxyParams }),
    );
    const clientFor = (owner) =>
        stateInit(
            CODES.client,
            clientData({ owner, proxy: proxy.address, publicKey: keys.publicKey, stake: params.minClientStake, params: leafParams }),
        );
    const workerFor = (owner) =>
        stateInit(CODES.worker, workerData({ owner, proxy: proxy.address, publicKey: keys.publicKey, params: leafParams }));
    const client = clientFor(w.clientOwner.address);
    // A second client, owned by the `stranger` wallet (the full-cycle scenario closes it the forced way).
    const client2 = clientFor(w.stranger.address);
    const worker = workerFor(w.workerOwner.address);

    const net = { bc, w, keys, wrongKeys, keyManagerKeys, params, rootParams, proxyParams, leafParams, root, proxy, client, client2, worker, clientFor, workerFor };

    if (deployRoot) {
        const r = await send(bc, w.rootOwner, root.address, toNano('1'), null, { init: root.init });
        assert.ok(findTx(r, { to: root.address, deploy: true, success: true }), 'root deploys');
    }
    if (deployProxy) {
        const r = await send(bc, w.proxyOwner, proxy.address, proxyStake + toNano('0.2'), body.proxyIncreaseStake(proxyStake, w.proxyOwner.address), {
            init: proxy.init,
        });
        assert.ok(findTx(r, { to: proxy.address, deploy: true, success: true }), 'proxy deploys');
    }
    return net;
}

/** Sends an internal message from a treasury wallet; returns the sandbox result (all resulting transactions). */
export async function send(bc, from, to, value, msgBody, { init, bounce = true } = {}) {
    // Through the treasury contract (not an injected message), so its balance really pays: the money
    // invariant test counts every nanoTON.
    return from.send({ to, value, body: msgBody ?? new Cell(), init, bounce });
}

/**
 * Delivers an internal message that claims to come from `fromAddress` without any wallet paying for it.
 * Used (sparingly) to forge messages a real contract would never send, e.g. a client report with an
 * unknown payload, and by the scenario export (which the Rust side replays the same way).
 */
export async function inject(bc, fromAddress, to, value, msgBody, { init, bounce = true } = {}) {
    return bc.sendMessage(internal({ from: fromAddress, to, value, body: msgBody ?? new Cell(), stateInit: init, bounce }));
}

/** Deploys the client contract of `net.w.clientOwner` with a first top-up of `amount`. */
export async function deployClient(net, amount = toNano('10')) {
    const r = await send(net.bc, net.w.clientOwner, net.client.address, amount + toNano('0.5'), body.clientTopUp(amount, net.w.clientOwner.address), {
        init: net.client.init,
    });
    expectTx(r, { to: net.client.address, deploy: true, success: true });
    expectTx(r, { to: net.proxy.address, success: true });
    return r;
}

/** Deploys the worker contract of `net.w.workerOwner` (its register message announces it to the proxy). */
export async function deployWorker(net) {
    const r = await send(net.bc, net.w.workerOwner, net.worker.address, toNano('0.5'), body.workerRegister(net.w.workerOwner.address), {
        init: net.worker.init,
    });
    expectTx(r, { to: net.worker.address, deploy: true, success: true });
    return r;
}

const sameAddr = (a, b) => a && b && a.equals(b);

/** Finds the first transaction matching {from, to, op, success, exitCode, deploy, bounced}. */
export function findTx(result, m) {
    for (const tx of result.transactions) {
        const f = flattenTransaction(tx);
        if (m.from && !sameAddr(f.from, m.from)) continue;
        if (m.to && !sameAddr(f.on, m.to)) continue;
        if (m.op !== undefined && f.op !== m.op) continue;
        if (m.success !== undefined && f.success !== m.success) continue;
        if (m.exitCode !== undefined && f.exitCode !== m.exitCode) continue;
        if (m.deploy !== undefined && f.deploy !== m.deploy) continue;
        if (m.bounced !== undefined && Boolean(f.inMessageBounced) !== m.bounced) continue;
        return { tx, flat: f };
    }
    return undefined;
}

/** Asserts that `to` ran a transaction with the given outcome; returns it. */
export function expectTx(result, m, note = '') {
    const found = findTx(result, m);
    if (!found) {
        const seen = result.transactions.map((tx) => {
            const f = flattenTransaction(tx);
            return `  on=${f.on?.toString().slice(0, 10)} op=0x${(f.op ?? 0).toString(16)} exit=${f.exitCode} ok=${f.success} bounced=${f.inMessageBounced}`;
        });
        assert.fail(`no transaction like ${describe(m)} ${note}\nseen:\n${seen.join('\n')}`);
    }
    return found;
}

/** Asserts that the transaction on `to` failed with `exitCode` (and, being bounceable, bounced). */
export function expectReject(result, to, exitCode, note = '') {
    return expectTx(result, { to, success: false, exitCode }, note);
}

function describe(m) {
    return JSON.stringify(m, (k, v) => (v && v.toRawString ? v.toRawString().slice(0, 12) : typeof v === 'bigint' ? v.toString() : v));
}

/** Compute-phase gas of a transaction found by findTx/expectTx. */
export function gasOf(found) {
    const d = found.tx.description;
    return d.type === 'generic' && d.computePhase.type === 'vm' ? Number(d.computePhase.gasUsed) : 0;
}

/** Outgoing internal messages of a transaction as {to, value, op}. */
export function outMessages(found) {
    const out = [];
    for (const msg of found.tx.outMessages.values()) {
        if (msg.info.type !== 'internal') continue;
        const s = msg.body.beginParse();
        out.push({ to: msg.info.dest, value: msg.info.value.coins, op: s.remainingBits >= 32 ? s.loadUint(32) : undefined, body: msg.body });
    }
    return out;
}

export async function balanceOf(bc, address) {
    return (await bc.getContract(address)).balance;
}

export async function dataOf(bc, address) {
    const c = await bc.getContract(address);
    const st = c.accountState;
    return st && st.type === 'active' ? st.state.data : null;
}
