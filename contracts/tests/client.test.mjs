// Client contract: top-ups (anyone and owner), secret hash, stake, register nonce, withdraw above the stake,
// proxy-signed charge and grant-refund (cumulative, replay-proof), the refund request with its close delay
// and the forced refund from the proxy's stake, bounces from the proxy, and every rejection.

import { test, before, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { beginCell } from '@ton/core';
import { internal } from '@ton/sandbox';
import {
    createNetwork, send, expectTx, expectReject, outMessages, balanceOf, dataOf, deployClient, START_TIME,
} from './lib/fixture.mjs';
import {
    body, OP, ERR, STATE, toNano, getClientData, getProxyData, signedTokens, signedClose, signedEnvelope, tokensPayload, COMMISSION_ESTIMATE, STORAGE_ESTIMATE,
} from './lib/cocoon.mjs';

let net;
let fresh;
let funded;

before(async () => {
    net = await createNetwork();
    fresh = net.bc.snapshot();
    await deployClient(net, toNano('10'));
    funded = net.bc.snapshot();
});

beforeEach(async () => {
    await net.bc.loadFrom(funded);
});

const C = () => net.client.address;
const client = () => getClientData(net.bc, C());
const owner = () => net.w.clientOwner;
const ownerSend = (b, value = toNano('0.3')) => send(net.bc, owner(), C(), value, b);
const relay = (b, value = toNano('0.3')) => send(net.bc, net.w.relayer, C(), value, b);
const charge = (tokens, qid) => signedTokens(OP.clientChargeSigned, tokens, C(), net.w.relayer.address, net.keys.secretKey, qid);
const grant = (tokens) => signedTokens(OP.clientGrantRefundSigned, tokens, C(), net.w.relayer.address, net.keys.secretKey);

/** The client_proxy_request the proxy received in `r`: state snapshot and payload. */
function reportIn(r) {
    const tx = expectTx(r, { to: net.proxy.address, op: OP.clientProxyRequest });
    const s = tx.tx.inMessage.body.beginParse();
    s.loadUint(32);
    const queryId = s.loadUintBig(64);
    const ownerAddr = s.loadAddress();
    const st = s.loadRef().beginParse();
    const state = { state: st.loadUint(2), balance: st.loadCoins(), stake: st.loadCoins(), tokensUsed: st.loadUintBig(64), secretHash: st.loadUintBig(256) };
    const payload = s.loadMaybeRef();
    return { tx, queryId, owner: ownerAddr, state, payload: payload?.beginParse() };
}

test('deploy by top-up: bookkeeping on the client, the TON in the proxy pool', async () => {
    await net.bc.loadFrom(fresh);
    const poolBefore = await balanceOf(net.bc, net.proxy.address);
    const r = await deployClient(net, toNano('10'));
    const d = await client();
    assert.ok(d.owner.equals(owner().address));
    assert.ok(d.proxy.equals(net.proxy.address));
    assert.deepEqual([d.state, d.balance, d.stake, d.tokensUsed, d.unlockTs, d.secretHash], [STATE.normal, toNano('10'), toNano('1'), 0n, 0, 0n]);
    assert.equal(await balanceOf(net.bc, net.proxy.address) - poolBefore, toNano('10'), 'the pool grew by exactly the top-up');
    assert.equal(await balanceOf(net.bc, C()), COMMISSION_ESTIMATE + STORAGE_ESTIMATE, 'the client keeps its operating reserve');
    const rep = reportIn(r);
    assert.ok(rep.owner.equals(owner().address));
    assert.equal(rep.state.balance, toNano('10'));
    assert.equal(rep.payload.loadUint(32), OP.clientProxyTopUp);
    assert.equal(rep.payload.loadCoins(), toNano('10'));
});

test('anyone can top up; the value and the contract balance must cover it', async () => {
    let r = await send(net.bc, net.w.stranger, C(), toNano('1.2'), body.clientTopUp(toNano('1'), net.w.stranger.address));
    expectTx(r, { to: C(), success: true });
    assert.equal((await client()).balance, toNano('11'));
    r = await send(net.bc, net.w.stranger, C(), toNano('1.05'), body.clientTopUp(toNano('1'), net.w.stranger.address));
    expectReject(r, C(), ERR.lowMsgValue);
    // A brand-new client contract must also keep its own reserve (0.11 TON): 1 + 0.15 is not enough.
    const other = net.clientFor(net.w.stranger.address);
    r = await send(net.bc, net.w.stranger, other.address, toNano('1.15'), body.clientTopUp(toNano('1'), net.w.stranger.address), { init: other.init });
    expectReject(r, other.address, ERR.lowSmcBalance);
});

test('owner operations: secret hash, secret hash with top-up, stake, register nonce', async () => {
    const hash = 0xfeedn << 240n;
    let r = await send(net.bc, net.w.stranger, C(), toNano('0.3'), body.clientChangeSecretHash(hash, net.w.stranger.address));
    expectReject(r, C(), ERR.expectedMessageFromOwner);
    r = await ownerSend(body.clientChangeSecretHash(hash, owner().address));
    expectTx(r, { to: C(), success: true });
    assert.equal((await client()).secretHash, hash);
    assert.equal(reportIn(r).state.secretHash, hash, 'the proxy node learns the new secret hash');
    assert.equal(reportIn(r).payload, undefined);

    r = await send(net.bc, net.w.stranger, C(), toNano('2'), body.clientChangeSecretHashAndTopUp(toNano('1'), 1n, net.w.stranger.address));
    expectReject(r, C(), ERR.expectedMessageFromOwner);
    r = await ownerSend(body.clientChangeSecretHashAndTopUp(toNano('1'), 7n, owner().address), toNano('1.2'));
    expectTx(r, { to: C(), success: true });
    let d = await client();
    assert.equal(d.secretHash, 7n);
    assert.equal(d.balance, toNano('11'));

    r = await ownerSend(body.clientIncreaseStake(toNano('1'), owner().address));
    expectReject(r, C(), ERR.lowMsgValue, 'the stake must grow');
    r = await send(net.bc, net.w.stranger, C(), toNano('0.3'), body.clientIncreaseStake(toNano('3'), net.w.stranger.address));
    expectReject(r, C(), ERR.expectedMessageFromOwner);
    r = await ownerSend(body.clientIncreaseStake(toNano('3'), owner().address));
    expectTx(r, { to: C(), success: true });
    assert.equal((await client()).stake, toNano('3'));
    assert.equal(reportIn(r).state.stake, toNano('3'));

    r = await send(net.bc, net.w.stranger, C(), toNano('0.3'), body.clientRegister(5n, net.w.stranger.address));
    expectReject(r, C(), ERR.expectedMessageFromOwner);
    r = await ownerSend(body.clientRegister(0x0123456789abcdefn, owner().address));
    const tx = expectTx(r, { to: C(), success: true });
    const rep = reportIn(r);
    assert.equal(rep.payload.loadUint(32), OP.clientProxyRegister);
    assert.equal(rep.payload.loadUintBig(64), 0x0123456789abcdefn, 'the nonce reaches the proxy (C++ node reads it)');
    const [toProxy, excess] = outMessages(tx);
    assert.equal(toProxy.value, 1n, 'a report carries 1 nanoTON');
    assert.equal(excess.op, OP.excesses);
    assert.ok(excess.to.equals(owner().address));
    d = await client();
    assert.equal(d.balance, toNano('11'));
});

test('withdraw returns the balance above the stake, never below it', async () => {
    let r = await send(net.bc, net.w.stranger, C(), toNano('0.3'), body.clientWithdraw(net.w.stranger.address));
    expectReject(r, C(), ERR.expectedOwner);
    const pool = await balanceOf(net.bc, net.proxy.address);
    r = await ownerSend(body.clientWithdraw(owner().address));
    expectTx(r, { to: C(), success: true });
    const proxyTx = expectTx(r, { to: net.proxy.address, success: true });
    const [payout] = outMessages(proxyTx);
    assert.ok(payout.to.equals(owner().address));
    assert.equal(payout.op, OP.payout);
    assert.equal(payout.value, toNano('9'), 'balance 10 - stake 1');
    assert.equal(pool - (await balanceOf(net.bc, net.proxy.address)), toNano('9'));
    assert.equal((await client()).balance, toNano('1'));
    r = await ownerSend(body.clientWithdraw(owner().address));
    expectReject(r, C(), ERR.lowSmcBalance, 'withdraw below (at) the stake');
    r = await ownerSend(body.clientWithdraw(owner().address), toNano('0.05'));
    expectReject(r, C(), ERR.lowMsgValue);
});

test('signed charge: cumulative, relayed by anyone, replay and forgery rejected', async () => {
    let r = await relay(charge(1000n));
    const tx = expectTx(r, { to: C(), success: true });
    let d = await client();
    assert.equal(d.tokensUsed, 1000n);
    assert.equal(d.balance, toNano('10') - 1000n * 2000n);
    assert.equal(reportIn(r).state.tokensUsed, 1000n);
    assert.ok(outMessages(tx)[1].to.equals(net.w.relayer.address), 'excesses to the relayer');

    r = await relay(charge(1500n));
    expectTx(r, { to: C(), success: true });
    assert.equal((await client()).balance, toNano('10') - 1500n * 2000n, 'only the delta is charged');

    const replay = charge(2000n, 99n);
    r = await relay(replay);
    expectTx(r, { to: C(), success: true });
    r = await relay(replay);
    expectReject(r, C(), ERR.oldMessage, 'same message twice');
    r = await relay(charge(1999n));
    expectReject(r, C(), ERR.oldMessage, 'lower cumulative count');
    r = await relay(charge(2000n));
    expectReject(r, C(), ERR.oldMessage, 'equal cumulative count');

    r = await relay(signedTokens(OP.clientChargeSigned, 5000n, C(), net.w.relayer.address, net.wrongKeys.secretKey));
    expectReject(r, C(), ERR.badSignature);
    r = await relay(signedTokens(OP.clientChargeSigned, 5000n, net.proxy.address, net.w.relayer.address, net.keys.secretKey));
    expectReject(r, C(), ERR.expectedMyAddress, 'receipt for another client');
    r = await relay(signedEnvelope(OP.clientChargeSigned, 3n, net.w.relayer.address, tokensPayload(OP.clientGrantRefundSigned, 3n, 5000n, C()), net.keys.secretKey));
    expectReject(r, C(), ERR.signedMsgFormatMismatch, 'grant-refund payload in a charge envelope');
    r = await relay(charge(5000n), toNano('0.09'));
    expectReject(r, C(), ERR.lowMsgValue);
    assert.equal((await client()).tokensUsed, 2000n);

    // Usage beyond the balance floors it at zero (the stake is what covers the gap).
    r = await relay(charge(10_000_000n));
    expectTx(r, { to: C(), success: true });
    d = await client();
    assert.equal(d.balance, 0n);
    assert.equal(d.tokensUsed, 10_000_000n);
});

test('signed grant-refund settles the last usage, closes and refunds the rest', async () => {
    await relay(charge(1000n));
    let r = await relay(grant(999n));
    expectReject(r, C(), ERR.oldMessage, 'below the charged count');
    const pool = await balanceOf(net.bc, net.proxy.address);
    r = await relay(grant(1500n));
    expectTx(r, { to: C(), success: true });
    const proxyTx = expectTx(r, { to: net.proxy.address, success: true });
    const [payout] = outMessages(proxyTx);
    const expected = toNano('10') - 1500n * 2000n;
    assert.ok(payout.to.equals(owner().address));
    assert.equal(payout.value, expected);
    assert.equal(pool - (await balanceOf(net.bc, net.proxy.address)), expected);
    const d = await client();
    assert.deepEqual([d.state, d.balance, d.tokensUsed, d.unlockTs], [STATE.closed, 0n, 1500n, 0]);
    assert.equal(await balanceOf(net.bc, C()), STORAGE_ESTIMATE, 'a closed client hands its reserve on');

    // Closed with nothing left: every operation is refused.
    r = await relay(grant(1500n));
    expectReject(r, C(), ERR.closed, 'replayed grant-refund');
    r = await relay(charge(2000n));
    expectReject(r, C(), ERR.closed);
    r = await send(net.bc, net.w.stranger, C(), toNano('1.5'), body.clientTopUp(toNano('1'), net.w.stranger.address));
    expectReject(r, C(), ERR.closed);
    r = await ownerSend(body.clientRequestRefund(owner().address));
    expectReject(r, C(), ERR.closed);
    r = await ownerSend(body.clientRegister(1n, owner().address));
    expectReject(r, C(), ERR.closed);
});

test('grant-refund at the already charged count is accepted', async () => {
    await relay(charge(1000n));
    const r = await relay(grant(1000n));
    expectTx(r, { to: C(), success: true });
    assert.equal((await client()).state, STATE.closed);
});

test('refund request: closing with the delay, then a forced refund from the proxy stake', async () => {
    let r = await send(net.bc, net.w.stranger, C(), toNano('0.3'), body.clientRequestRefund(net.w.stranger.address));
    expectReject(r, C(), ERR.expectedOwner);
    r = await ownerSend(body.clientRequestRefund(owner().address));
    expectTx(r, { to: C(), success: true });
    let [payout] = outMessages(expectTx(r, { to: net.proxy.address, success: true }));
    assert.equal(payout.value, toNano('9'), 'money above the stake comes back at once');
    let d = await client();
    assert.deepEqual([d.state, d.balance, d.unlockTs], [STATE.closing, toNano('1'), START_TIME + 300]);

    // While closing the proxy may still charge, and the owner cannot withdraw.
    r = await relay(charge(100_000n));
    expectTx(r, { to: C(), success: true });
    assert.equal((await client()).balance, toNano('1') - 100_000n * 2000n);
    r = await ownerSend(body.clientWithdraw(owner().address));
    expectReject(r, C(), ERR.closed);

    net.bc.now = START_TIME + 300;
    r = await ownerSend(body.clientRequestRefund(owner().address));
    expectReject(r, C(), ERR.notUnlockedYet, 'the delay is strict');
    net.bc.now = START_TIME + 301;
    const stakeBefore = (await getProxyData(net.bc, net.proxy.address)).stake;
    r = await ownerSend(body.clientRequestRefund(owner().address));
    expectTx(r, { to: C(), success: true });
    const rep = reportIn(r);
    assert.equal(rep.payload.loadUint(32), OP.clientProxyRefundForce);
    [payout] = outMessages(rep.tx);
    const owed = toNano('1') - 100_000n * 2000n;
    assert.equal(payout.value, owed);
    assert.ok(payout.to.equals(owner().address));
    assert.equal(stakeBefore - (await getProxyData(net.bc, net.proxy.address)).stake, owed, 'paid against the proxy stake');
    d = await client();
    assert.deepEqual([d.state, d.balance], [STATE.closed, 0n]);
    r = await relay(grant(100_000n));
    expectReject(r, C(), ERR.closed, 'nothing left to grant');
});

test('bounce: a report the proxy refuses comes back and is ignored by the client', async () => {
    // Close the proxy completely, then withdraw: the proxy refuses (closed) and the report bounces.
    await send(net.bc, net.w.proxyOwner, net.proxy.address, toNano('0.2'), body.ownerProxyClose(net.w.proxyOwner.address));
    net.bc.now = START_TIME + 600;
    await send(net.bc, net.w.relayer, net.proxy.address, toNano('0.2'),
        signedClose(OP.proxyCloseCompleteSigned, net.proxy.address, net.w.relayer.address, net.keys.secretKey));
    assert.equal((await getProxyData(net.bc, net.proxy.address)).state, STATE.closed);
    // Step through the transactions so the client's data can be read between its own tx and the bounce.
    const seen = [];
    let afterOwnTx;
    const iter = await net.bc.sendMessageIter(internal({ from: owner().address, to: C(), value: toNano('0.3'), body: body.clientWithdraw(owner().address) }));
    for await (const tx of iter) {
        seen.push(tx);
        if (seen.length === 1) afterOwnTx = await dataOf(net.bc, C());
    }
    const r = { transactions: seen };
    expectTx(r, { to: C(), success: true, bounced: false });
    assert.equal((await client()).balance, toNano('1'), 'the withdraw was booked');
    expectReject(r, net.proxy.address, ERR.closed);
    const bounce = expectTx(r, { to: C(), bounced: true, success: true });
    assert.equal(outMessages(bounce).length, 0);
    assert.ok(bounce.flat.value > toNano('0.1'), 'the TON carried to the proxy came back to the client contract');
    assert.ok((await dataOf(net.bc, C())).equals(afterOwnTx), 'the bounce changes nothing (reference behaviour, see docs)');
});

test('unknown ops, including the C++-only top_up_reopen', async () => {
    let r = await ownerSend(beginCell().storeUint(OP.ownerClientTopUpReopen, 32).storeUint(1, 64).storeCoins(1).storeAddress(owner().address).endCell());
    expectReject(r, C(), ERR.unknownOp);
    r = await ownerSend(beginCell().storeUint(0x7777, 32).storeUint(1, 64).endCell());
    expectReject(r, C(), ERR.unknownOp);
    const before = await dataOf(net.bc, C());
    r = await ownerSend(body.doNotProcess());
    expectTx(r, { to: C(), success: true });
    assert.ok((await dataOf(net.bc, C())).equals(before));
});
