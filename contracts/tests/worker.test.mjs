// Worker contract: proxy-signed payout and last payout (cumulative, replay-proof), the split between worker
// and proxy, register, the closed state, and every rejection (bad signature, wrong contract, low value,
// non-increasing tokens, wrong sender, a proxy pool that cannot pay).

import { test, before, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { beginCell } from '@ton/core';
import { createNetwork, send, expectTx, expectReject, outMessages, balanceOf, dataOf, deployClient, deployWorker, START_TIME } from './lib/fixture.mjs';
import { body, OP, ERR, STATE, toNano, getWorkerData, getProxyData, signedTokens, signedEnvelope, tokensPayload, signedClose } from './lib/cocoon.mjs';

let net;
let funded;

before(async () => {
    net = await createNetwork();
    await deployClient(net, toNano('20'));
    await deployWorker(net);
    funded = net.bc.snapshot();
});

beforeEach(async () => {
    await net.bc.loadFrom(funded);
});

const W = () => net.worker.address;
const worker = () => getWorkerData(net.bc, W());
const relay = (b, value = toNano('0.3')) => send(net.bc, net.w.relayer, W(), value, b);
const payout = (tokens, qid) => signedTokens(OP.workerPayoutSigned, tokens, W(), net.w.relayer.address, net.keys.secretKey, qid);
const lastPayout = (tokens) => signedTokens(OP.workerLastPayoutSigned, tokens, W(), net.w.relayer.address, net.keys.secretKey);

test('deploy/register: the proxy is told about the worker with a payload-less report', async () => {
    const d = await worker();
    assert.ok(d.owner.equals(net.w.workerOwner.address));
    assert.ok(d.proxy.equals(net.proxy.address));
    assert.deepEqual([d.state, d.tokens], [STATE.normal, 0n]);
    const r = await send(net.bc, net.w.workerOwner, W(), toNano('0.3'), body.workerRegister(net.w.workerOwner.address));
    const tx = expectTx(r, { to: W(), success: true });
    const [report, excess] = outMessages(tx);
    assert.equal(report.op, OP.workerProxyRequest);
    assert.equal(report.value, 1n);
    assert.equal(excess.op, OP.excesses);
    // 1 nanoTON buys no gas: the proxy's compute phase is skipped, the node reads the transaction itself.
    const atProxy = expectTx(r, { to: net.proxy.address, op: OP.workerProxyRequest });
    assert.equal(atProxy.tx.description.computePhase.type, 'skipped');
    let rj = await send(net.bc, net.w.stranger, W(), toNano('0.3'), body.workerRegister(net.w.stranger.address));
    expectReject(rj, W(), ERR.expectedMessageFromOwner);
    rj = await send(net.bc, net.w.workerOwner, W(), toNano('0.1'), body.workerRegister(net.w.workerOwner.address));
    expectReject(rj, W(), ERR.lowMsgValue, 'value must exceed the commission estimate');
});

test('signed payout: worker owner gets delta x fee, the proxy books delta x (price - fee)', async () => {
    const pool = await balanceOf(net.bc, net.proxy.address);
    let r = await relay(payout(3_000_000n));
    expectTx(r, { to: W(), success: true });
    const proxyTx = expectTx(r, { to: net.proxy.address, op: OP.workerProxyRequest, success: true });
    const [pay, excess] = outMessages(proxyTx);
    assert.ok(pay.to.equals(net.w.workerOwner.address));
    assert.equal(pay.op, OP.payout);
    assert.equal(pay.value, 3_000_000n * 1000n);
    assert.ok(excess.to.equals(net.w.relayer.address));
    assert.equal(pool - (await balanceOf(net.bc, net.proxy.address)), 3_000_000n * 1000n, 'only the worker part left the pool');
    assert.equal((await getProxyData(net.bc, net.proxy.address)).balance, 3_000_000n * 1000n);
    assert.equal((await worker()).tokens, 3_000_000n);

    r = await relay(payout(5_000_000n));
    const [pay2] = outMessages(expectTx(r, { to: net.proxy.address, op: OP.workerProxyRequest, success: true }));
    assert.equal(pay2.value, 2_000_000n * 1000n, 'cumulative: only the delta is paid');
    assert.equal((await getProxyData(net.bc, net.proxy.address)).balance, 5_000_000n * 1000n);
});

test('payout rejections: replay, stale count, forgery, wrong contract, low value', async () => {
    const m = payout(1000n, 500n);
    let r = await relay(m);
    expectTx(r, { to: W(), success: true });
    r = await relay(m);
    expectReject(r, W(), ERR.oldMessage, 'replay');
    r = await relay(payout(1000n));
    expectReject(r, W(), ERR.oldMessage, 'equal count');
    r = await relay(payout(999n));
    expectReject(r, W(), ERR.oldMessage, 'lower count');
    r = await relay(signedTokens(OP.workerPayoutSigned, 2000n, W(), net.w.relayer.address, net.wrongKeys.secretKey));
    expectReject(r, W(), ERR.badSignature);
    r = await relay(signedTokens(OP.workerPayoutSigned, 2000n, net.client.address, net.w.relayer.address, net.keys.secretKey));
    expectReject(r, W(), ERR.expectedMyAddress);
    r = await relay(signedEnvelope(OP.workerPayoutSigned, 8n, net.w.relayer.address, tokensPayload(OP.workerLastPayoutSigned, 8n, 2000n, W()), net.keys.secretKey));
    expectReject(r, W(), ERR.signedMsgFormatMismatch);
    r = await relay(payout(2000n), toNano('0.1'));
    expectReject(r, W(), ERR.lowMsgValue, 'value must exceed 0.1 TON');
    // A client charge receipt is not a worker payout (different op inside the signature).
    r = await relay(signedEnvelope(OP.workerPayoutSigned, 9n, net.w.relayer.address, tokensPayload(OP.clientChargeSigned, 9n, 2000n, W()), net.keys.secretKey));
    expectReject(r, W(), ERR.signedMsgFormatMismatch);
    assert.equal((await worker()).tokens, 1000n);
});

test('last payout pays the delta and closes; the same count is allowed; then everything is refused', async () => {
    await relay(payout(1000n));
    let r = await relay(lastPayout(999n));
    expectReject(r, W(), ERR.oldMessage);
    r = await relay(lastPayout(1000n));
    const tx = expectTx(r, { to: W(), success: true });
    assert.equal(outMessages(tx).length, 1, 'all spare TON goes along to the proxy');
    const [pay] = outMessages(expectTx(r, { to: net.proxy.address, op: OP.workerProxyRequest, success: true }));
    assert.equal(pay.value, 0n, 'nothing new to pay');
    const d = await worker();
    assert.deepEqual([d.state, d.tokens], [STATE.closed, 1000n]);
    r = await relay(payout(2000n));
    expectReject(r, W(), ERR.closed);
    r = await relay(lastPayout(2000n));
    expectReject(r, W(), ERR.closed);
    r = await send(net.bc, net.w.workerOwner, W(), toNano('0.3'), body.workerRegister(net.w.workerOwner.address));
    expectReject(r, W(), ERR.closed);
});

test('a last payout with a new count pays the remaining delta', async () => {
    await relay(payout(1000n));
    const r = await relay(lastPayout(4000n));
    const [pay] = outMessages(expectTx(r, { to: net.proxy.address, op: OP.workerProxyRequest, success: true }));
    assert.equal(pay.value, 3000n * 1000n);
    assert.equal((await worker()).state, STATE.closed);
});

test('a closed proxy refuses worker payouts (the report bounces back to the worker)', async () => {
    await send(net.bc, net.w.proxyOwner, net.proxy.address, toNano('0.2'), body.ownerProxyClose(net.w.proxyOwner.address));
    net.bc.now = START_TIME + 600;
    await send(net.bc, net.w.relayer, net.proxy.address, toNano('0.2'), signedClose(OP.proxyCloseCompleteSigned, net.proxy.address, net.w.relayer.address, net.keys.secretKey));
    const r = await relay(payout(1000n));
    expectTx(r, { to: W(), success: true, bounced: false });
    expectReject(r, net.proxy.address, ERR.closed);
    expectTx(r, { to: W(), bounced: true, success: true });
});

test('a payout larger than the pool fails at the proxy with 1002', async () => {
    // The pool holds ~25 TON (client 20 + stake 5); 30 TON worth of tokens cannot be paid.
    const r = await relay(payout(30_000_000n));
    expectTx(r, { to: W(), success: true });
    expectReject(r, net.proxy.address, ERR.lowBalance);
});

test('unknown op and do-not-process', async () => {
    let r = await relay(beginCell().storeUint(0x4242, 32).storeUint(0, 64).endCell());
    expectReject(r, W(), ERR.unknownOp);
    const before = await dataOf(net.bc, W());
    r = await relay(body.doNotProcess());
    expectTx(r, { to: W(), success: true });
    assert.ok((await dataOf(net.bc, W())).equals(before));
});
