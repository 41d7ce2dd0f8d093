// Proxy contract: stake, commission payout, the two-step close (owner, text and proxy-signed variants)
// with time travel, the save-state marker, sender authentication of client/worker reports, and every
// rejection (bad signature, wrong sender, replay, early close-complete, closed state).

import { test, before, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { beginCell } from '@ton/core';
import {
    createNetwork, send, inject, expectTx, expectReject, outMessages, balanceOf, dataOf, deployClient, deployWorker, START_TIME,
} from './lib/fixture.mjs';
import {
    body, OP, ERR, STATE, toNano, getProxyData, getClientData, signedClose, signedEnvelope, closePayload, signedTokens,
    STORAGE_ESTIMATE,
} from './lib/cocoon.mjs';

let net;
let snapshot;

before(async () => {
    net = await createNetwork();
    snapshot = net.bc.snapshot();
});

beforeEach(async () => {
    await net.bc.loadFrom(snapshot);
});

const proxyData = () => getProxyData(net.bc, net.proxy.address);
const P = () => net.proxy.address;

/** Gives the proxy a commission balance: client funds, then a worker cash-out of `tokens`. */
async function earnCommission(tokens) {
    await deployClient(net, toNano('10'));
    await deployWorker(net);
    const r = await send(net.bc, net.w.relayer, net.worker.address, toNano('0.5'),
        signedTokens(OP.workerPayoutSigned, tokens, net.worker.address, net.w.relayer.address, net.keys.secretKey));
    expectTx(r, { to: P(), op: OP.workerProxyRequest, success: true });
}

test('initial state: stake from the deploy message, get-method fields', async () => {
    const d = await proxyData();
    assert.ok(d.owner.equals(net.w.proxyOwner.address));
    assert.ok(d.root.equals(net.root.address));
    assert.equal(d.publicKey, BigInt('0x' + net.keys.publicKey.toString('hex')));
    assert.deepEqual([d.state, d.balance, d.stake, d.unlockTs], [STATE.normal, 0n, toNano('5'), 0]);
    assert.deepEqual([d.pricePerToken, d.workerFeePerToken, d.minProxyStake, d.minClientStake, d.paramsVersion],
        [2000n, 1000n, toNano('1'), toNano('1'), 1]);
});

test('anyone can increase the stake; the contract keeps exactly the staked amount', async () => {
    const before = await balanceOf(net.bc, P());
    let r = await send(net.bc, net.w.stranger, P(), toNano('2.5'), body.proxyIncreaseStake(toNano('2'), net.w.stranger.address));
    const tx = expectTx(r, { to: P(), success: true });
    assert.equal(outMessages(tx)[0].op, OP.excesses);
    assert.equal(await balanceOf(net.bc, P()) - before, toNano('2'));
    assert.equal((await proxyData()).stake, toNano('7'));
    // value must cover grams + commission estimate
    r = await send(net.bc, net.w.stranger, P(), toNano('2.05'), body.proxyIncreaseStake(toNano('2'), net.w.stranger.address));
    expectReject(r, P(), ERR.lowMsgValue);
});

test('commission payout: anyone triggers, the owner receives exactly the booked balance', async () => {
    await earnCommission(1_000_000n); // proxy part = 1e6 * (2000 - 1000) = 1 TON
    assert.equal((await proxyData()).balance, toNano('1'));
    let r = await send(net.bc, net.w.stranger, P(), toNano('0.05'), body.proxyPayoutRequest(net.w.stranger.address));
    expectReject(r, P(), ERR.lowMsgValue);
    r = await send(net.bc, net.w.stranger, P(), toNano('0.2'), body.proxyPayoutRequest(net.w.stranger.address));
    const tx = expectTx(r, { to: P(), success: true });
    const [payout, excess] = outMessages(tx);
    assert.ok(payout.to.equals(net.w.proxyOwner.address));
    assert.equal(payout.op, OP.payout);
    assert.equal(payout.value, toNano('1'));
    assert.ok(excess.to.equals(net.w.stranger.address));
    assert.equal(excess.op, OP.excesses);
    assert.equal((await proxyData()).balance, 0n);
});

test('owner withdraw by text "w": commission and the attached value go to the owner', async () => {
    await earnCommission(500_000n);
    let r = await send(net.bc, net.w.stranger, P(), toNano('0.2'), body.text('w'));
    expectReject(r, P(), ERR.expectedMessageFromOwner);
    const before = await balanceOf(net.bc, P());
    r = await send(net.bc, net.w.proxyOwner, P(), toNano('0.2'), body.text('w'));
    const tx = expectTx(r, { to: P(), success: true });
    const [payout] = outMessages(tx);
    assert.equal(payout.op, OP.payout);
    assert.ok(payout.value > toNano('0.5') && payout.value < toNano('0.7'));
    assert.equal(before - (await balanceOf(net.bc, P())), toNano('0.5'), 'exactly the commission left the pool');
    assert.equal((await proxyData()).balance, 0n);
    r = await send(net.bc, net.w.proxyOwner, P(), toNano('0.2'), body.text('x'));
    expectReject(r, P(), ERR.unknownTextOp);
});

test('owner close: closing with the delay, then close-complete pays everything to the owner', async () => {
    let r = await send(net.bc, net.w.stranger, P(), toNano('0.2'), body.ownerProxyClose(net.w.stranger.address));
    expectReject(r, P(), ERR.expectedMessageFromOwner);
    r = await send(net.bc, net.w.proxyOwner, P(), toNano('0.05'), body.ownerProxyClose(net.w.proxyOwner.address));
    expectReject(r, P(), ERR.lowMsgValue);
    r = await send(net.bc, net.w.proxyOwner, P(), toNano('0.2'), body.ownerProxyClose(net.w.proxyOwner.address));
    expectTx(r, { to: P(), success: true });
    let d = await proxyData();
    assert.equal(d.state, STATE.closing);
    assert.equal(d.unlockTs, START_TIME + 600);
    // closing twice is refused
    r = await send(net.bc, net.w.proxyOwner, P(), toNano('0.2'), body.ownerProxyClose(net.w.proxyOwner.address));
    expectReject(r, P(), ERR.closed);

    const complete = () => send(net.bc, net.w.relayer, P(), toNano('0.2'),
        signedClose(OP.proxyCloseCompleteSigned, P(), net.w.relayer.address, net.keys.secretKey));
    net.bc.now = START_TIME + 599;
    r = await complete();
    expectReject(r, P(), ERR.notUnlockedYet, 'one second early');
    net.bc.now = START_TIME + 600;
    r = await complete();
    const tx = expectTx(r, { to: P(), success: true });
    const [payout] = outMessages(tx);
    assert.ok(payout.to.equals(net.w.proxyOwner.address));
    assert.equal(payout.op, OP.payout);
    assert.ok(payout.value > toNano('5'), 'stake and the relayer value go to the owner');
    assert.equal(await balanceOf(net.bc, P()), STORAGE_ESTIMATE, 'only the storage reserve stays');
    d = await proxyData();
    assert.deepEqual([d.state, d.balance, d.stake, d.unlockTs], [STATE.closed, 0n, 0n, 0]);

    // A closed proxy refuses everything that moves money, and a replayed close-complete.
    r = await complete();
    expectReject(r, P(), ERR.closed, 'replayed close-complete');
    r = await send(net.bc, net.w.stranger, P(), toNano('1.2'), body.proxyIncreaseStake(toNano('1'), net.w.stranger.address));
    expectReject(r, P(), ERR.closed);
    r = await send(net.bc, net.w.stranger, P(), toNano('0.2'), body.proxyPayoutRequest(net.w.stranger.address));
    expectReject(r, P(), ERR.closed);
    r = await send(net.bc, net.w.proxyOwner, P(), toNano('0.2'), body.text('w'));
    expectReject(r, P(), ERR.closed);
});

test('text "c" closes like the owner op', async () => {
    let r = await send(net.bc, net.w.stranger, P(), toNano('0.2'), body.text('c'));
    expectReject(r, P(), ERR.expectedMessageFromOwner);
    r = await send(net.bc, net.w.proxyOwner, P(), toNano('0.2'), body.text('c'));
    const tx = expectTx(r, { to: P(), success: true });
    assert.equal(outMessages(tx)[0].op, OP.excesses);
    assert.ok(outMessages(tx)[0].to.equals(net.w.proxyOwner.address));
    assert.equal((await proxyData()).state, STATE.closing);
});

test('proxy-signed close request: anyone relays it; bad signatures and mismatches are rejected', async () => {
    const relay = (b, value = toNano('0.2')) => send(net.bc, net.w.relayer, P(), value, b);
    const sk = net.keys.secretKey;
    const ex = net.w.relayer.address;

    let r = await relay(signedClose(OP.proxyCloseSigned, P(), ex, net.wrongKeys.secretKey));
    expectReject(r, P(), ERR.badSignature, 'signed by another key');
    // flip one bit of a valid signature
    const good = signedClose(OP.proxyCloseSigned, P(), ex, sk, 77n);
    const s = good.beginParse();
    const [op, q, addr, sig, payload] = [s.loadUint(32), s.loadUintBig(64), s.loadAddress(), s.loadBuffer(64), s.loadRef()];
    sig[10] ^= 1;
    r = await relay(beginCell().storeUint(op, 32).storeUint(q, 64).storeAddress(addr).storeBuffer(sig).storeRef(payload).endCell());
    expectReject(r, P(), ERR.badSignature, 'tampered signature');
    // payload signed for the close-complete op inside a close envelope
    r = await relay(signedEnvelope(OP.proxyCloseSigned, 5n, ex, closePayload(OP.proxyCloseCompleteSigned, 5n, P()), sk));
    expectReject(r, P(), ERR.signedMsgFormatMismatch, 'op mismatch');
    r = await relay(signedEnvelope(OP.proxyCloseSigned, 5n, ex, closePayload(OP.proxyCloseSigned, 6n, P()), sk));
    expectReject(r, P(), ERR.signedMsgFormatMismatch, 'query id mismatch');
    r = await relay(signedClose(OP.proxyCloseSigned, net.root.address, ex, sk));
    expectReject(r, P(), ERR.expectedMyAddress, 'signed for another contract');
    r = await relay(signedClose(OP.proxyCloseSigned, P(), ex, sk), toNano('0.09'));
    expectReject(r, P(), ERR.lowMsgValue);
    r = await relay(signedClose(OP.proxyCloseCompleteSigned, P(), ex, sk));
    expectReject(r, P(), ERR.closed, 'close-complete before close');
    assert.equal((await proxyData()).state, STATE.normal);

    r = await relay(good);
    const tx = expectTx(r, { to: P(), success: true });
    assert.ok(outMessages(tx)[0].to.equals(ex), 'excesses to the relayer');
    assert.equal((await proxyData()).state, STATE.closing);
    r = await relay(good);
    expectReject(r, P(), ERR.closed, 'replayed close request');
});

test('save-state marker: accepted, visible in the transaction, no effect', async () => {
    const before = await dataOf(net.bc, P());
    const marker = body.proxySaveState(42, 0x1234n << 200n);
    // As the node sends it: 1 nanoTON. That buys no gas, so the compute phase is skipped, but the
    // transaction (with the marker as its in-message) is on the account, which is all the node reads.
    let r = await send(net.bc, net.w.proxyOwner, P(), 1n, marker);
    let tx = expectTx(r, { to: P(), op: OP.doNotProcess });
    assert.equal(tx.tx.description.computePhase.type, 'skipped');
    assert.ok(tx.tx.inMessage.body.equals(marker), 'the node reads (seqno, session hash) from the in-message');
    // With gas attached the contract runs and deliberately does nothing (no reply, data unchanged).
    const balance = await balanceOf(net.bc, P());
    r = await send(net.bc, net.w.proxyOwner, P(), toNano('0.05'), marker);
    tx = expectTx(r, { to: P(), op: OP.doNotProcess, success: true });
    assert.equal(tx.tx.description.computePhase.type, 'vm');
    assert.equal(outMessages(tx).length, 0);
    assert.ok((await dataOf(net.bc, P())).equals(before));
    assert.ok((await balanceOf(net.bc, P())) > balance, 'the value stays on the contract');
});

test('client and worker reports are authenticated by their contract address', async () => {
    const owner = net.w.clientOwner.address;
    // A stranger pretending to be a client asking for a refund from the pool.
    let r = await send(net.bc, net.w.stranger, P(), toNano('0.5'),
        body.clientProxyRequest({ owner, payload: body.refundGrantedPayload(toNano('3'), net.w.stranger.address) }));
    expectReject(r, P(), ERR.contractAddressMismatch);
    // The client contract of *another* owner (real address, wrong owner field) is also refused.
    const other = net.clientFor(net.w.stranger.address);
    r = await inject(net.bc, other.address, P(), toNano('0.5'),
        body.clientProxyRequest({ owner, payload: body.refundGrantedPayload(toNano('3'), net.w.stranger.address) }));
    expectReject(r, P(), ERR.contractAddressMismatch);
    // A fake worker asking for a payout.
    r = await send(net.bc, net.w.stranger, P(), toNano('0.5'),
        body.workerProxyRequest({ owner: net.w.stranger.address, tokens: 10n, payload: body.workerPayoutPayload(toNano('1'), 0n, net.w.stranger.address) }));
    expectReject(r, P(), ERR.contractAddressMismatch);
    // Plain reports (no payload) carry no request: accepted without checks or effect.
    const before = await dataOf(net.bc, P());
    r = await send(net.bc, net.w.stranger, P(), toNano('0.1'), body.clientProxyRequest({ owner }));
    expectTx(r, { to: P(), success: true });
    r = await send(net.bc, net.w.stranger, P(), toNano('0.1'), body.workerProxyRequest({ owner }));
    expectTx(r, { to: P(), success: true });
    assert.ok((await dataOf(net.bc, P())).equals(before));
});

test('unknown payload ops from a genuine client/worker address, and unknown proxy ops', async () => {
    const unknown = beginCell().storeUint(0xdeadbeef, 32).endCell();
    let r = await inject(net.bc, net.client.address, P(), toNano('0.5'),
        body.clientProxyRequest({ owner: net.w.clientOwner.address, payload: unknown }));
    expectReject(r, P(), ERR.unknownOp, 'client payload');
    r = await inject(net.bc, net.worker.address, P(), toNano('0.5'),
        body.workerProxyRequest({ owner: net.w.workerOwner.address, payload: unknown }));
    expectReject(r, P(), ERR.unknownOp, 'worker payload');
    r = await send(net.bc, net.w.stranger, P(), toNano('0.5'), beginCell().storeUint(0x11111111, 32).storeUint(0, 64).endCell());
    expectReject(r, P(), ERR.unknownOp);
});

test('refund-force is capped by the proxy stake and reduces it', async () => {
    // Forged from the genuine client address to ask for more than the stake (5 TON).
    const before = await balanceOf(net.bc, P());
    const payload = beginCell().storeUint(OP.clientProxyRefundForce, 32).storeCoins(toNano('8')).storeAddress(net.w.clientOwner.address).endCell();
    const r = await inject(net.bc, net.client.address, P(), toNano('0.3'),
        body.clientProxyRequest({ owner: net.w.clientOwner.address, state: STATE.closed, payload }));
    const tx = expectTx(r, { to: P(), success: true });
    const [payout] = outMessages(tx);
    assert.ok(payout.to.equals(net.w.clientOwner.address));
    assert.equal(payout.value, toNano('5'));
    assert.equal((await proxyData()).stake, 0n);
    assert.equal(before - (await balanceOf(net.bc, P())), toNano('5'));
});

test('a payout the pool cannot cover fails with 1002 (instead of a range-check exit)', async () => {
    // The pool holds the 5 TON stake only; ask it (from the genuine client address) to refund 50 TON.
    const r = await inject(net.bc, net.client.address, P(), toNano('0.3'),
        body.clientProxyRequest({ owner: net.w.clientOwner.address, payload: body.refundGrantedPayload(toNano('50'), net.w.clientOwner.address) }));
    expectReject(r, P(), ERR.lowBalance);
});

test('a closing proxy sends top-ups straight back to the client owner', async () => {
    await deployClient(net, toNano('3'));
    await send(net.bc, net.w.proxyOwner, P(), toNano('0.2'), body.ownerProxyClose(net.w.proxyOwner.address));
    const before = await balanceOf(net.bc, P());
    const r = await send(net.bc, net.w.clientOwner, net.client.address, toNano('2.5'), body.clientTopUp(toNano('2'), net.w.clientOwner.address));
    const tx = expectTx(r, { to: P(), op: OP.clientProxyRequest, success: true });
    const [payout, excess] = outMessages(tx);
    assert.equal(payout.op, OP.payout);
    assert.ok(payout.to.equals(net.w.clientOwner.address));
    assert.ok(payout.value < toNano('2') && payout.value > toNano('1.99'), 'top-up minus the forwarding fee');
    assert.equal(excess.op, OP.excesses);
    assert.equal(await balanceOf(net.bc, P()), before, 'the pool did not grow');
    // The client's own bookkeeping still counts it (reference behaviour); its refund request will return it.
    assert.equal((await getClientData(net.bc, net.client.address)).balance, toNano('5'));
});

test('params struct versions 3, 4 and 5 (same cell) are accepted by proxy, client and worker; 6 is not', async () => {
    for (const structVersion of [3, 4, 5]) {
        const n = await createNetwork({ params: { structVersion } });
        await deployClient(n, toNano('2'));
        await deployWorker(n);
        const r = await send(n.bc, n.w.relayer, n.worker.address, toNano('0.5'),
            signedTokens(OP.workerPayoutSigned, 1000n, n.worker.address, n.w.relayer.address, n.keys.secretKey));
        expectTx(r, { to: n.proxy.address, op: OP.workerProxyRequest, success: true }, `struct version ${structVersion}`);
    }
    const n = await createNetwork({ params: { structVersion: 6 } });
    const r = await send(n.bc, n.w.clientOwner, n.client.address, toNano('2.5'), body.clientTopUp(toNano('2'), n.w.clientOwner.address), {
        init: n.client.init,
    });
    expectReject(r, n.proxy.address, ERR.storedDataDamaged, 'the proxy reads its params on a client report');
});
