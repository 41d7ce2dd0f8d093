// Root contract: every owner operation, the version counters, get-methods, raw storage layout (as the C++
// node parses it), and the rejections (wrong sender, unknown op, malformed input) with their bounces.

import { test, before, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { beginCell } from '@ton/core';
import { createNetwork, send, expectTx, expectReject, findTx, outMessages, dataOf, CODES } from './lib/fixture.mjs';
import { body, OP, ERR, toNano, getRootData, parseRootData, defaultParams } from './lib/cocoon.mjs';

let net;
let snapshot;

before(async () => {
    net = await createNetwork({ deployProxy: false });
    snapshot = net.bc.snapshot();
});

beforeEach(async () => {
    await net.bc.loadFrom(snapshot);
});

const ownerSend = (b, value = toNano('0.5')) => send(net.bc, net.w.rootOwner, net.root.address, value, b);
const rootState = async () => parseRootData(await dataOf(net.bc, net.root.address));
const getter = async (name, hash) => {
    const r = await net.bc.runGetMethod(net.root.address, name, [{ type: 'int', value: hash }]);
    return r.stackReader.readNumber();
};

test('initial state and get-methods', async () => {
    const d = await getRootData(net.bc, net.root.address);
    assert.equal(d.version, 0);
    assert.equal(d.paramsVersion, 1);
    assert.equal(d.uniqueId, 13);
    assert.equal(d.isTest, 1);
    assert.equal(d.pricePerToken, 2000n);
    assert.equal(d.workerFeePerToken, 1000n);
    assert.ok(d.owner.equals(net.w.rootOwner.address));

    const r = (await net.bc.runGetMethod(net.root.address, 'get_cur_params')).stackReader;
    const cur = Array.from({ length: 14 }, () => r.readBigNumber());
    assert.deepEqual(cur.slice(0, 11), [1n, 13n, 1n, 2000n, 1000n, 10000n, 10000n, 600n, 300n, toNano('1'), toNano('1')]);
    assert.equal(cur[11], BigInt('0x' + CODES.proxy.hash().toString('hex')));
    assert.equal(cur[12], BigInt('0x' + CODES.worker.hash().toString('hex')));
    assert.equal(cur[13], BigInt('0x' + CODES.client.hash().toString('hex')));
    assert.equal((await net.bc.runGetMethod(net.root.address, 'last_proxy_seqno')).stackReader.readNumber(), 0);
});

for (const [kind, addOp, delOp, getterName, field] of [
    ['worker', OP.rootAddWorkerType, OP.rootDelWorkerType, 'worker_hash_is_valid', 'workerHashes'],
    ['model', OP.rootAddModelType, OP.rootDelModelType, 'model_hash_is_valid', 'modelHashes'],
    ['proxy', OP.rootAddProxyType, OP.rootDelProxyType, 'proxy_hash_is_valid', 'proxyHashes'],
]) {
    test(`add/del ${kind} hash: registry, getter and version`, async () => {
        const h1 = 0x1111n << 200n;
        const h2 = 0xabcdefn;
        let r = await ownerSend(body.rootHash(addOp, h1));
        const tx = expectTx(r, { to: net.root.address, op: addOp, success: true });
        // Excesses go back to the owner, non-bounceable, with nearly all of the 0.5 TON.
        const out = outMessages(tx);
        assert.equal(out.length, 1);
        assert.equal(out[0].op, OP.excesses);
        assert.ok(out[0].value > toNano('0.49'));
        await ownerSend(body.rootHash(addOp, h2));
        assert.equal(await getter(getterName, h1), -1);
        assert.equal(await getter(getterName, h2), -1);
        assert.equal(await getter(getterName, 5n), 0);
        let st = await rootState();
        assert.deepEqual(st[field], [h2, h1].sort((a, b) => (a < b ? -1 : 1)));
        assert.equal(st.version, 2);

        r = await ownerSend(body.rootHash(delOp, h1));
        expectTx(r, { to: net.root.address, op: delOp, success: true });
        assert.equal(await getter(getterName, h1), 0);
        st = await rootState();
        assert.deepEqual(st[field], [h2]);
        assert.equal(st.version, 3);
        assert.equal(st.params.paramsVersion, 1, 'hash changes do not move params_version');
        // Deleting an absent hash is accepted (idempotent) and still counts as a change.
        r = await ownerSend(body.rootHash(delOp, 42n));
        expectTx(r, { to: net.root.address, success: true });
        assert.equal((await rootState()).version, 4);
    });
}

test('register, update and unregister proxies', async () => {
    let r = await ownerSend(body.rootRegisterProxy('10.0.0.1:11001 10.0.0.1:11002'));
    expectTx(r, { to: net.root.address, success: true });
    await ownerSend(body.rootRegisterProxy('10.0.0.2:11001'));
    let st = await rootState();
    assert.equal(st.lastProxySeqno, 2);
    assert.deepEqual(st.proxies, {
        1: { type: 0, text: '10.0.0.1:11001 10.0.0.1:11002' },
        2: { type: 0, text: '10.0.0.2:11001' },
    });
    assert.equal((await net.bc.runGetMethod(net.root.address, 'last_proxy_seqno')).stackReader.readNumber(), 2);

    r = await ownerSend(body.rootUpdateProxy(1, '10.9.9.9:1 10.9.9.9:2'));
    expectTx(r, { to: net.root.address, success: true });
    r = await ownerSend(body.rootUpdateProxy(7, '10.9.9.9:1'));
    expectReject(r, net.root.address, ERR.unknownProxyType, 'update of an unknown seqno');

    r = await ownerSend(body.rootUnregisterProxy(2));
    expectTx(r, { to: net.root.address, success: true });
    r = await ownerSend(body.rootUpdateProxy(2, '10.9.9.9:1'));
    expectReject(r, net.root.address, ERR.unknownProxyType, 'update of a removed seqno');

    st = await rootState();
    assert.deepEqual(st.proxies, { 1: { type: 0, text: '10.9.9.9:1 10.9.9.9:2' } });
    assert.equal(st.lastProxySeqno, 2, 'seqnos are never reused');
    assert.equal(st.version, 4);
});

test('malformed proxy descriptions are rejected', async () => {
    const head = () => beginCell().storeUint(OP.rootRegisterProxy, 32).storeUint(1, 64);
    // type bit 1 (not IPv4 text)
    let r = await ownerSend(head().storeUint(1, 1).storeUint(1, 7).storeUint(0x41, 8).endCell());
    expectReject(r, net.root.address, ERR.msgFormatMismatch);
    // trailing bits after the declared length
    r = await ownerSend(head().storeUint(0, 1).storeUint(1, 7).storeUint(0x41, 8).storeUint(1, 3).endCell());
    expectReject(r, net.root.address, ERR.cellUnderflow);
    // declared length longer than the data
    r = await ownerSend(head().storeUint(0, 1).storeUint(5, 7).storeUint(0x41, 8).endCell());
    expectReject(r, net.root.address, ERR.cellUnderflow);
    assert.equal((await rootState()).lastProxySeqno, 0);
});

test('change fees and params bump both counters', async () => {
    let r = await ownerSend(body.rootChangeFees(5000n, 3000n));
    expectTx(r, { to: net.root.address, success: true });
    let d = await getRootData(net.bc, net.root.address);
    assert.equal(d.pricePerToken, 5000n);
    assert.equal(d.workerFeePerToken, 3000n);
    assert.equal(d.version, 1);
    assert.equal(d.paramsVersion, 2);

    const p = defaultParams({ pricePerToken: 7n, workerFeePerToken: 7n, proxyDelayBeforeClose: 1200, clientDelayBeforeClose: 86400, minProxyStake: toNano('3'), minClientStake: toNano('2') });
    r = await ownerSend(body.rootChangeParams(p));
    expectTx(r, { to: net.root.address, success: true });
    const st = await rootState();
    assert.equal(st.version, 2);
    assert.equal(st.params.paramsVersion, 3);
    assert.equal(st.params.pricePerToken, 7n);
    assert.equal(st.params.workerFeePerToken, 7n);
    assert.equal(st.params.proxyDelayBeforeClose, 1200);
    assert.equal(st.params.clientDelayBeforeClose, 86400);
    assert.equal(st.params.minProxyStake, toNano('3'));
    assert.equal(st.params.minClientStake, toNano('2'));
    // Untouched fields and the code cells survive.
    assert.equal(st.params.uniqueId, 13);
    assert.equal(st.params.structVersion, 3);
    assert.ok(st.params.clientCode.equals(CODES.client));

    // A worker fee above the price would make every worker payout fail: refused.
    r = await ownerSend(body.rootChangeFees(10n, 11n));
    expectReject(r, net.root.address, ERR.msgFormatMismatch);
    r = await ownerSend(body.rootChangeParams({ ...p, workerFeePerToken: 8n }));
    expectReject(r, net.root.address, ERR.msgFormatMismatch);
    assert.equal((await rootState()).params.paramsVersion, 3);
});

test('upgrade contracts replaces the three code cells', async () => {
    // Any three distinct cells will do; use the contracts' codes rotated.
    const r = await ownerSend(body.rootUpgradeContracts(CODES.client, CODES.proxy, CODES.worker));
    expectTx(r, { to: net.root.address, success: true });
    const st = await rootState();
    assert.ok(st.params.proxyCode.equals(CODES.client));
    assert.ok(st.params.workerCode.equals(CODES.proxy));
    assert.ok(st.params.clientCode.equals(CODES.worker));
    assert.equal(st.params.paramsVersion, 2);
    assert.equal(st.version, 1);
});

test('reset clears every registry but keeps the proxy seqno', async () => {
    await ownerSend(body.rootHash(OP.rootAddWorkerType, 1n));
    await ownerSend(body.rootHash(OP.rootAddModelType, 2n));
    await ownerSend(body.rootHash(OP.rootAddProxyType, 3n));
    await ownerSend(body.rootRegisterProxy('1.2.3.4:5'));
    const r = await ownerSend(body.rootReset());
    expectTx(r, { to: net.root.address, success: true });
    const st = await rootState();
    assert.deepEqual([st.workerHashes, st.modelHashes, st.proxyHashes, st.proxies], [[], [], [], {}]);
    assert.equal(st.lastProxySeqno, 1);
    assert.equal(st.version, 5);
});

test('change owner hands over every owner operation', async () => {
    let r = await ownerSend(body.rootChangeOwner(net.w.stranger.address));
    expectTx(r, { to: net.root.address, success: true });
    r = await ownerSend(body.rootHash(OP.rootAddModelType, 9n));
    expectReject(r, net.root.address, ERR.expectedMessageFromOwner, 'old owner');
    r = await send(net.bc, net.w.stranger, net.root.address, toNano('0.5'), body.rootHash(OP.rootAddModelType, 9n));
    expectTx(r, { to: net.root.address, success: true });
    const d = await getRootData(net.bc, net.root.address);
    assert.ok(d.owner.equals(net.w.stranger.address));
    assert.equal(d.version, 2);
});

test('upgrade code keeps data and version; upgrade full replaces both', async () => {
    const before = await dataOf(net.bc, net.root.address);
    let r = await ownerSend(body.rootUpgradeCode(CODES.worker));
    expectTx(r, { to: net.root.address, success: true });
    let acc = (await net.bc.getContract(net.root.address)).accountState;
    assert.ok(acc.state.code.equals(CODES.worker), 'code replaced');
    assert.ok(acc.state.data.equals(before), 'data unchanged, version not bumped');

    // Back to the root code via a fresh network, then a full upgrade with new data.
    await net.bc.loadFrom(snapshot);
    const newData = beginCell().storeUint(0xdead, 16).endCell();
    r = await ownerSend(body.rootUpgradeFull(newData, CODES.client));
    const tx = expectTx(r, { to: net.root.address, success: true });
    assert.equal(outMessages(tx)[0].op, OP.excesses);
    acc = (await net.bc.getContract(net.root.address)).accountState;
    assert.ok(acc.state.code.equals(CODES.client));
    assert.ok(acc.state.data.equals(newData));
});

test('non-owners are rejected on every operation, and their value bounces back', async () => {
    const bodies = [
        body.rootHash(OP.rootAddWorkerType, 1n),
        body.rootHash(OP.rootDelWorkerType, 1n),
        body.rootHash(OP.rootAddModelType, 1n),
        body.rootHash(OP.rootDelModelType, 1n),
        body.rootHash(OP.rootAddProxyType, 1n),
        body.rootHash(OP.rootDelProxyType, 1n),
        body.rootRegisterProxy('1.2.3.4:5'),
        body.rootUnregisterProxy(1),
        body.rootUpdateProxy(1, '1.2.3.4:5'),
        body.rootChangeFees(1n, 1n),
        body.rootChangeParams(defaultParams()),
        body.rootUpgradeContracts(CODES.proxy, CODES.worker, CODES.client),
        body.rootUpgradeCode(CODES.worker),
        body.rootReset(),
        body.rootUpgradeFull(beginCell().endCell(), CODES.worker),
        body.rootChangeOwner(net.w.stranger.address),
    ];
    const before = await dataOf(net.bc, net.root.address);
    for (const b of bodies) {
        const r = await send(net.bc, net.w.stranger, net.root.address, toNano('0.5'), b);
        expectReject(r, net.root.address, ERR.expectedMessageFromOwner, `op 0x${b.beginParse().loadUint(32).toString(16)}`);
        // The bounce returns the value (minus fees) to the stranger.
        const bounce = expectTx(r, { to: net.w.stranger.address, bounced: true });
        assert.ok(bounce.flat.value > toNano('0.49'));
    }
    assert.ok((await dataOf(net.bc, net.root.address)).equals(before));
});

test('unknown op, do-not-process and empty messages', async () => {
    const before = await dataOf(net.bc, net.root.address);
    let r = await ownerSend(beginCell().storeUint(0x12345678, 32).storeUint(0, 64).endCell());
    expectReject(r, net.root.address, ERR.unknownOp);
    r = await ownerSend(body.doNotProcess());
    let tx = expectTx(r, { to: net.root.address, success: true });
    assert.equal(outMessages(tx).length, 0, 'do-not-process: no reply');
    r = await send(net.bc, net.w.stranger, net.root.address, toNano('0.1'), null);
    tx = expectTx(r, { to: net.root.address, success: true });
    assert.equal(outMessages(tx).length, 0, 'empty body: accepted silently (top-up)');
    // Trailing garbage after a fixed-size body is rejected (strict parsing).
    r = await ownerSend(beginCell().storeUint(OP.rootReset, 32).storeUint(0, 64).storeUint(1, 1).endCell());
    expectReject(r, net.root.address, ERR.cellUnderflow);
    assert.ok((await dataOf(net.bc, net.root.address)).equals(before));
});
