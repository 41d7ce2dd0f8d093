// Root contract: every owner operation, the version counters, get-methods, raw storage layout (as the C++
// node parses it), and the rejections (wrong sender, unknown op, malformed input) with their bounces.

import { test, before, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { beginCell } from '@ton/core';
import { createNetwork, send, expectTx, expectReject, findTx, outMessages, dataOf, CODES, START_TIME } from './lib/fixture.mjs';
import {
    body, OP, ERR, VERIFIED, toNano, getRootData, parseRootData, parseParams, defaultParams, paramsCell, keyManagerCell, verifiedKeysCell,
    signedAddPublicKey, signedEnvelope, proxyKeys, qid,
} from './lib/cocoon.mjs';

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
    assert.equal(st.params.structVersion, 5);
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
        body.rootChangeKeyManager(1n, 2n, '1.2.3.4:5'),
        body.rootAddPublicKey(1n, 1, START_TIME + 100),
        body.rootDelPublicKey(1n),
        body.rootAddVerifiedKey(VERIFIED.proxy, 1n),
        body.rootDelVerifiedKey(VERIFIED.proxy, 1n),
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

// === struct versions 4 and 5: the key manager, registered public keys, verified keys ===

const keyOf = (kp) => BigInt('0x' + kp.publicKey.toString('hex'));
const setKeyManager = (kp = net.keyManagerKeys, image = 0x1a9en, addr = '127.0.0.1:13001') =>
    ownerSend(body.rootChangeKeyManager(keyOf(kp), image, addr));
const relay = (b) => send(net.bc, net.w.relayer, net.root.address, toNano('0.4'), b);

test('a new root is at struct version 5 with an empty key-manager cell and empty verified keys', async () => {
    const st = await rootState();
    assert.equal(st.params.structVersion, 5);
    assert.deepEqual(st.keyManager, { publicKeys: [], publicKey: 0n, imageHash: 0n, addr: '' });
    assert.deepEqual(st.verified, { proxy: [], worker: [], keyManager: [] });
    // The storage is exactly owner, version, ^registry, ^params, ^keyManager, ^verified (no trailing bits).
    const raw = (await dataOf(net.bc, net.root.address)).beginParse();
    assert.equal(raw.remainingRefs, 4);
});

test('change key manager: key, image hash and address; registered keys stay; bad addresses refused', async () => {
    await ownerSend(body.rootAddPublicKey(0x77n, 1, START_TIME + 1000));
    let r = await setKeyManager(net.keyManagerKeys, 0xabcn, '10.1.2.3:13001');
    const tx = expectTx(r, { to: net.root.address, op: OP.rootChangeKeyManager, success: true });
    assert.equal(outMessages(tx)[0].op, OP.excesses);
    let st = await rootState();
    assert.equal(st.keyManager.publicKey, keyOf(net.keyManagerKeys));
    assert.equal(st.keyManager.imageHash, 0xabcn);
    assert.equal(st.keyManager.addr, '10.1.2.3:13001');
    assert.deepEqual(st.keyManager.publicKeys.map((k) => k.key), [0x77n]);
    assert.equal(st.version, 2);
    assert.equal(st.params.paramsVersion, 1, 'key-manager changes do not move params_version');
    // An empty address is allowed (the C++ node reads it as "none").
    r = await ownerSend(body.rootChangeKeyManager(5n, 6n, ''));
    expectTx(r, { to: net.root.address, success: true });
    st = await rootState();
    assert.deepEqual([st.keyManager.publicKey, st.keyManager.imageHash, st.keyManager.addr], [5n, 6n, '']);

    const head = () => beginCell().storeUint(OP.rootChangeKeyManager, 32).storeUint(1, 64).storeUint(1, 256).storeUint(2, 256);
    r = await ownerSend(head().storeUint(1, 1).storeUint(1, 7).storeUint(0x41, 8).endCell());
    expectReject(r, net.root.address, ERR.msgFormatMismatch, 'address type bit 1');
    r = await ownerSend(head().storeUint(0, 1).storeUint(1, 7).storeUint(0x41, 8).storeUint(1, 1).endCell());
    expectReject(r, net.root.address, ERR.cellUnderflow, 'trailing bits');
    assert.equal((await rootState()).version, 3);
});

test('owner adds and removes registered public keys; getter; expired keys refused and purged', async () => {
    const t0 = net.bc.now;
    let r = await ownerSend(body.rootAddPublicKey(0xa1n, 1, t0 + 100));
    expectTx(r, { to: net.root.address, op: OP.rootAddPublicKey, success: true });
    await ownerSend(body.rootAddPublicKey(0xb2n, 2, t0 + 1000));
    assert.equal(await getter('public_key_is_valid', 0xa1n), -1);
    assert.equal(await getter('public_key_is_valid', 0xb2n), -1);
    assert.equal(await getter('public_key_is_valid', 0xc3n), 0);
    let st = await rootState();
    assert.deepEqual(st.keyManager.publicKeys, [
        { key: 0xa1n, type: 1, expireAt: t0 + 100 },
        { key: 0xb2n, type: 2, expireAt: t0 + 1000 },
    ]);
    assert.equal(st.version, 2);

    // Already expired: refused with old_message (1000); expiring this very second: accepted.
    r = await ownerSend(body.rootAddPublicKey(0xc3n, 1, t0 - 1));
    expectReject(r, net.root.address, ERR.oldMessage);
    r = await ownerSend(body.rootAddPublicKey(0xc3n, 1, t0));
    expectTx(r, { to: net.root.address, success: true });

    // Later, the next add drops every key that has expired meanwhile (0xa1 and 0xc3), keeps 0xb2.
    net.bc.now = t0 + 101;
    await ownerSend(body.rootAddPublicKey(0xd4n, 1, t0 + 5000));
    st = await rootState();
    assert.deepEqual(st.keyManager.publicKeys.map((k) => k.key), [0xb2n, 0xd4n]);

    // Re-adding a key replaces its type and expiry.
    await ownerSend(body.rootAddPublicKey(0xb2n, 7, t0 + 9000));
    st = await rootState();
    assert.deepEqual(st.keyManager.publicKeys[0], { key: 0xb2n, type: 7, expireAt: t0 + 9000 });

    r = await ownerSend(body.rootDelPublicKey(0xb2n));
    expectTx(r, { to: net.root.address, op: OP.rootDelPublicKey, success: true });
    assert.equal(await getter('public_key_is_valid', 0xb2n), 0);
    // Deleting an absent key is accepted and counts as a change, like the hash registries.
    const v = (await rootState()).version;
    r = await ownerSend(body.rootDelPublicKey(0xb2n));
    expectTx(r, { to: net.root.address, success: true });
    st = await rootState();
    assert.equal(st.version, v + 1);
    assert.deepEqual(st.keyManager.publicKeys.map((k) => k.key), [0xd4n]);
    net.bc.now = t0;
});

test('the key manager signed add: anyone relays, the signature decides, excesses to send_excesses_to', async () => {
    const t0 = net.bc.now;
    // Before a key manager is set (key 0) nothing can be signed for it.
    let r = await relay(signedAddPublicKey(0xe1n, 1, t0 + 3600, net.w.relayer.address, net.keyManagerKeys.secretKey));
    expectReject(r, net.root.address, ERR.badSignature, 'no key manager yet');

    await setKeyManager();
    const before = (await rootState()).version;
    r = await send(net.bc, net.w.stranger, net.root.address, toNano('0.4'),
        signedAddPublicKey(0xe1n, 1, t0 + 3600, net.w.clientOwner.address, net.keyManagerKeys.secretKey));
    const tx = expectTx(r, { to: net.root.address, op: OP.rootAddPublicKeySigned, success: true });
    const out = outMessages(tx);
    assert.equal(out.length, 1);
    assert.equal(out[0].op, OP.excesses);
    assert.ok(out[0].to.equals(net.w.clientOwner.address), 'excesses go to the signed send_excesses_to');
    let st = await rootState();
    assert.deepEqual(st.keyManager.publicKeys, [{ key: 0xe1n, type: 1, expireAt: t0 + 3600 }]);
    assert.equal(st.version, before + 1);
    assert.equal(await getter('public_key_is_valid', 0xe1n), -1);

    // Refusals: another key's signature, an expired key, payload op or query id not the envelope's,
    // trailing data in the payload.
    const data = await dataOf(net.bc, net.root.address);
    r = await relay(signedAddPublicKey(0xe2n, 1, t0 + 3600, net.w.relayer.address, net.wrongKeys.secretKey));
    expectReject(r, net.root.address, ERR.badSignature, 'wrong key');
    r = await relay(signedAddPublicKey(0xe2n, 1, t0 - 1, net.w.relayer.address, net.keyManagerKeys.secretKey));
    expectReject(r, net.root.address, ERR.oldMessage, 'expired');
    const q = qid();
    const payload = (op, queryId, extra = false) => {
        const b = beginCell().storeUint(op, 32).storeUint(queryId, 64).storeUint(0xe2n, 256).storeUint(1, 8).storeUint(t0 + 3600, 32);
        if (extra) b.storeUint(0, 1);
        return b.endCell();
    };
    const sk = net.keyManagerKeys.secretKey;
    r = await relay(signedEnvelope(OP.rootAddPublicKeySigned, q, net.w.relayer.address, payload(OP.rootAddPublicKey, q), sk));
    expectReject(r, net.root.address, ERR.signedMsgFormatMismatch, 'payload op');
    r = await relay(signedEnvelope(OP.rootAddPublicKeySigned, q, net.w.relayer.address, payload(OP.rootAddPublicKeySigned, q + 1n), sk));
    expectReject(r, net.root.address, ERR.signedMsgFormatMismatch, 'payload query id');
    r = await relay(signedEnvelope(OP.rootAddPublicKeySigned, q, net.w.relayer.address, payload(OP.rootAddPublicKeySigned, q, true), sk));
    expectReject(r, net.root.address, ERR.cellUnderflow, 'trailing payload bits');
    assert.ok((await dataOf(net.bc, net.root.address)).equals(data), 'refusals change nothing');

    // A new key manager key invalidates the old key's signatures.
    await setKeyManager(proxyKeys('another-key-manager'));
    r = await relay(signedAddPublicKey(0xe3n, 1, t0 + 3600, net.w.relayer.address, net.keyManagerKeys.secretKey));
    expectReject(r, net.root.address, ERR.badSignature, 'old key manager');
    st = await rootState();
    assert.deepEqual(st.keyManager.publicKeys.map((k) => k.key), [0xe1n]);
});

test('verified proxy, worker and key-manager keys: add, delete, unknown kind refused', async () => {
    let r = await ownerSend(body.rootAddVerifiedKey(VERIFIED.proxy, 0x11n));
    const tx = expectTx(r, { to: net.root.address, op: OP.rootAddVerifiedKey, success: true });
    assert.equal(outMessages(tx)[0].op, OP.excesses);
    await ownerSend(body.rootAddVerifiedKey(VERIFIED.proxy, 0x12n));
    await ownerSend(body.rootAddVerifiedKey(VERIFIED.worker, 0x21n));
    await ownerSend(body.rootAddVerifiedKey(VERIFIED.keyManager, 0x31n));
    let st = await rootState();
    assert.deepEqual(st.verified, { proxy: [0x11n, 0x12n], worker: [0x21n], keyManager: [0x31n] });
    assert.equal(st.version, 4);

    r = await ownerSend(body.rootDelVerifiedKey(VERIFIED.proxy, 0x11n));
    expectTx(r, { to: net.root.address, op: OP.rootDelVerifiedKey, success: true });
    await ownerSend(body.rootDelVerifiedKey(VERIFIED.keyManager, 0x31n));
    await ownerSend(body.rootDelVerifiedKey(VERIFIED.worker, 0x99n)); // absent: accepted
    st = await rootState();
    assert.deepEqual(st.verified, { proxy: [0x12n], worker: [0x21n], keyManager: [] });
    assert.equal(st.version, 7);
    assert.equal(st.params.paramsVersion, 1);

    r = await ownerSend(body.rootAddVerifiedKey(3, 0x11n));
    expectReject(r, net.root.address, ERR.msgFormatMismatch, 'kind 3');
    r = await ownerSend(body.rootDelVerifiedKey(255, 0x11n));
    expectReject(r, net.root.address, ERR.msgFormatMismatch, 'kind 255');
});

/** A network whose root storage is at `structVersion` (3: as before the key manager; 4: no verified keys). */
async function oldRoot(structVersion) {
    const old = await createNetwork({ deployProxy: false, params: { structVersion } });
    const send0 = (b) => send(old.bc, old.w.rootOwner, old.root.address, toNano('0.5'), b);
    const state = async () => parseRootData(await dataOf(old.bc, old.root.address));
    return { old, send0, state };
}

test('a struct-3 root keeps working, refuses key operations (2001) and migrates to 5 with upgrade_full', async () => {
    const { old, send0, state } = await oldRoot(3);
    let st = await state();
    assert.equal(st.params.structVersion, 3);
    assert.equal(st.keyManager, null);
    assert.equal((await dataOf(old.bc, old.root.address)).beginParse().remainingRefs, 2, 'owner, version, ^registry, ^params only');
    let r = await send0(body.rootHash(OP.rootAddModelType, 0x42n));
    expectTx(r, { to: old.root.address, success: true });
    r = await send0(body.rootChangeFees(3000n, 1000n));
    expectTx(r, { to: old.root.address, success: true });
    for (const b of [
        body.rootChangeKeyManager(1n, 2n, ''),
        body.rootAddPublicKey(1n, 1, START_TIME + 100),
        body.rootDelPublicKey(1n),
        body.rootAddVerifiedKey(VERIFIED.proxy, 1n),
        signedAddPublicKey(1n, 1, START_TIME + 100, old.w.relayer.address, old.keyManagerKeys.secretKey),
    ]) {
        r = await send0(b);
        expectReject(r, old.root.address, ERR.rootStructVersion, `op 0x${b.beginParse().loadUint(32).toString(16)}`);
    }
    const r0 = await old.bc.runGetMethod(old.root.address, 'public_key_is_valid', [{ type: 'int', value: 1n }]);
    assert.equal(r0.stackReader.readNumber(), 0);

    // Migration: the same registry cell, params at struct 5 with params_version + 1, the two new cells.
    const raw = (await dataOf(old.bc, old.root.address)).beginParse();
    raw.loadAddress();
    raw.loadUint(32);
    const registryCell = raw.loadRef();
    const p = parseParams(raw.loadRef());
    const newParams = paramsCell({ ...p, structVersion: 5, paramsVersion: p.paramsVersion + 1 }, { proxy: p.proxyCode, worker: p.workerCode, client: p.clientCode });
    const newData = beginCell().storeAddress(st.owner).storeUint(st.version + 2, 32).storeRef(registryCell).storeRef(newParams)
        .storeRef(keyManagerCell()).storeRef(verifiedKeysCell()).endCell();
    r = await send0(body.rootUpgradeFull(newData, CODES.root));
    expectTx(r, { to: old.root.address, success: true });
    st = await state();
    assert.equal(st.params.structVersion, 5);
    assert.equal(st.params.paramsVersion, 3);
    assert.equal(st.params.pricePerToken, 3000n);
    assert.deepEqual(st.modelHashes, [0x42n]);
    r = await send0(body.rootChangeKeyManager(keyOf(old.keyManagerKeys), 9n, '127.0.0.1:13001'));
    expectTx(r, { to: old.root.address, success: true });
    r = await send0(body.rootAddVerifiedKey(VERIFIED.worker, 7n));
    expectTx(r, { to: old.root.address, success: true });
    st = await state();
    assert.equal(st.keyManager.addr, '127.0.0.1:13001');
    assert.deepEqual(st.verified.worker, [7n]);
});

test('a struct-4 root (upstream before verified keys): key-manager operations work, verified keys refused', async () => {
    const { old, send0, state } = await oldRoot(4);
    assert.equal((await dataOf(old.bc, old.root.address)).beginParse().remainingRefs, 3);
    let r = await send0(body.rootChangeKeyManager(keyOf(old.keyManagerKeys), 9n, '127.0.0.1:13001'));
    expectTx(r, { to: old.root.address, success: true });
    r = await send(old.bc, old.w.relayer, old.root.address, toNano('0.4'),
        signedAddPublicKey(0x5n, 1, START_TIME + 60, old.w.relayer.address, old.keyManagerKeys.secretKey));
    expectTx(r, { to: old.root.address, success: true });
    r = await send0(body.rootAddVerifiedKey(VERIFIED.proxy, 1n));
    expectReject(r, old.root.address, ERR.rootStructVersion);
    const st = await state();
    assert.equal(st.params.structVersion, 4);
    assert.equal(st.verified, null);
    assert.deepEqual(st.keyManager.publicKeys, [{ key: 0x5n, type: 1, expireAt: START_TIME + 60 }]);
    assert.equal((await dataOf(old.bc, old.root.address)).beginParse().remainingRefs, 3, 'still no fourth ref');
});
