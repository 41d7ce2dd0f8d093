// Cell layouts and message bodies of the Cocoon contracts, in JavaScript, for the sandbox tests and scripts.
//
// What lives here: pure builders/parsers (no blockchain): code loading, params/storage cells, contract
// addresses, every message body, proxy-signed envelopes, and get-method readers. These are written from the
// wire facts (reference messages.tlb, the C++ node's builders), independently of the Tolk sources, so a test
// that passes shows that the contracts agree with the documented layouts, not just with themselves.
// What must not live here: sandbox state or test assertions (see fixture.mjs and the *.test.mjs files).

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Address, beginCell, Cell, contractAddress, Dictionary, toNano } from '@ton/core';
import { keyPairFromSeed, sign } from '@ton/crypto';

const here = path.dirname(fileURLToPath(import.meta.url));
export const BUILD_DIR = path.resolve(here, '..', '..', 'build');

/** Code cell of a compiled contract (build/<name>.boc, the committed artefact). */
export function loadCode(name) {
    return Cell.fromBoc(fs.readFileSync(path.join(BUILD_DIR, `${name}.boc`)))[0];
}

export const OP = {
    excesses: 0x2565934c,
    payout: 0xc59a7cd3,
    doNotProcess: 0x9a1247c0,
    proxySaveState: 0x53109c0f,

    rootAddWorkerType: 0xe34b1c60,
    rootDelWorkerType: 0x8d94a79a,
    rootAddModelType: 0xc146134d,
    rootDelModelType: 0x92b11c18,
    rootAddProxyType: 0x71860e80,
    rootDelProxyType: 0x3c41d0b2,
    rootRegisterProxy: 0x927c7cb5,
    rootUnregisterProxy: 0x6d49eaf2,
    rootUpdateProxy: 0x9c7924ba,
    rootChangeFees: 0xc52ed8d4,
    rootChangeParams: 0x022fa189,
    rootUpgradeContracts: 0xa2370f61,
    rootUpgradeCode: 0x11aefd51,
    rootReset: 0x563c1d96,
    rootUpgradeFull: 0x4f7c5789,
    rootChangeOwner: 0xc4a1ae54,
    // struct version 4+ (C++ Opcodes.hpp at 9060ce5, cocoon-contracts edafcb2)
    rootChangeKeyManager: 0xb01c0fe9,
    rootAddPublicKey: 0x6e5a646a,
    rootAddPublicKeySigned: 0x9e0e1821,
    // ours: crc32 of the TL-B lines in contracts/README.md
    rootDelPublicKey: 0x2f543655,
    rootAddVerifiedKey: 0xb5877180,
    rootDelVerifiedKey: 0x121b56bc,

    workerProxyRequest: 0x4d725d2c,
    workerProxyPayoutRequest: 0x08e7d036,
    clientProxyRequest: 0x65448ff4,
    clientProxyTopUp: 0x5cfc6b87,
    clientProxyRegister: 0xa35cb580,
    clientProxyRefundGranted: 0xc68ebc7b,
    clientProxyRefundForce: 0xf4c354c9,

    extProxyPayoutRequest: 0x7610e6eb,
    extProxyIncreaseStake: 0x9713f187,
    ownerProxyClose: 0xb51d5a01,
    proxyCloseSigned: 0x636a4391,
    proxyCloseCompleteSigned: 0xe511abc7,

    workerPayoutSigned: 0xa040ad28,
    workerLastPayoutSigned: 0xf5f26a36,
    ownerWorkerRegister: 0x26ed7f65,

    extClientTopUp: 0xf172e6c2,
    clientChargeSigned: 0xbb63ff93,
    clientGrantRefundSigned: 0xefd711e1,
    ownerClientTopUpReopen: 0x29111ceb,
    ownerClientRegister: 0xc45f9f3b,
    ownerClientChangeSecretHash: 0xa9357034,
    ownerClientChangeSecretHashAndTopUp: 0x8473b408,
    ownerClientRequestRefund: 0xfafa6cc1,
    ownerClientIncreaseStake: 0x6a1f6a60,
    ownerClientWithdraw: 0xda068e78,
};

export const ERR = {
    oldMessage: 1000,
    lowSmcBalance: 1001,
    lowBalance: 1002,
    lowMsgValue: 1003,
    msgFormatMismatch: 1004,
    signedMsgFormatMismatch: 1005,
    closed: 1006,
    badSignature: 1007,
    storedDataDamaged: 1008,
    expectedOwner: 1009,
    expectedMessageFromOwner: 1010,
    notUnlockedYet: 1011,
    unknownOp: 1012,
    unknownTextOp: 1013,
    contractAddressMismatch: 1014,
    expectedMyAddress: 1015,
    unknownProxyType: 2000,
    rootStructVersion: 2001,
    cellUnderflow: 9,
};

export const STATE = { normal: 0, closing: 1, closed: 2 };

export const COMMISSION_ESTIMATE = toNano('0.1');
export const STORAGE_ESTIMATE = toNano('0.01');

/** Params as in the reference fake-TON config (notes §4.1), with short close delays for time travel. */
export function defaultParams(overrides = {}) {
    return {
        structVersion: 5,
        paramsVersion: 1,
        uniqueId: 13,
        isTest: true,
        pricePerToken: 2000n,
        workerFeePerToken: 1000n,
        promptMult: 10000,
        cachedMult: 10000,
        completionMult: 10000,
        reasoningMult: 10000,
        proxyDelayBeforeClose: 600,
        clientDelayBeforeClose: 300,
        minProxyStake: toNano('1'),
        minClientStake: toNano('1'),
        ...overrides,
    };
}

/** CocoonParams cell; `codes` = {proxy, worker, client} (each optional) as in serialize_params_cell's mask. */
export function paramsCell(p, codes = {}) {
    return beginCell()
        .storeUint(p.structVersion, 8)
        .storeUint(p.paramsVersion, 32)
        .storeUint(p.uniqueId, 32)
        .storeBit(p.isTest)
        .storeCoins(p.pricePerToken)
        .storeCoins(p.workerFeePerToken)
        .storeUint(p.promptMult, 32)
        .storeUint(p.cachedMult, 32)
        .storeUint(p.completionMult, 32)
        .storeUint(p.reasoningMult, 32)
        .storeUint(p.proxyDelayBeforeClose, 32)
        .storeUint(p.clientDelayBeforeClose, 32)
        .storeCoins(p.minProxyStake)
        .storeCoins(p.minClientStake)
        .storeMaybeRef(codes.proxy ?? null)
        .storeMaybeRef(codes.worker ?? null)
        .storeMaybeRef(codes.client ?? null)
        .endCell();
}

export function parseParams(cell) {
    const s = cell.beginParse();
    return {
        structVersion: s.loadUint(8),
        paramsVersion: s.loadUint(32),
        uniqueId: s.loadUint(32),
        isTest: s.loadBit(),
        pricePerToken: s.loadCoins(),
        workerFeePerToken: s.loadCoins(),
        promptMult: s.loadUint(32),
        cachedMult: s.loadUint(32),
        completionMult: s.loadUint(32),
        reasoningMult: s.loadUint(32),
        proxyDelayBeforeClose: s.loadUint(32),
        clientDelayBeforeClose: s.loadUint(32),
        minProxyStake: s.loadCoins(),
        minClientStake: s.loadCoins(),
        proxyCode: s.loadMaybeRef(),
        workerCode: s.loadMaybeRef(),
        clientCode: s.loadMaybeRef(),
    };
}

/** Kinds of verified keys, in the order of the three sets in the struct-5 cell. */
export const VERIFIED = { proxy: 0, worker: 1, keyManager: 2 };

/**
 * Root data in the FunC / C++ order: owner, version, ^registry, ^params, then by params struct version:
 * 4+ ^keyManager (Maybe ^publicKeys, key:bits256, imageHash:bits256, net addr `0:1 len:7 ascii`),
 * 5 ^verifiedKeys (three Maybe ^(HashmapE 256 ())). `structVersion` must match the params cell's.
 */
export function rootData({ owner, version = 0, params, lastProxySeqno = 0, structVersion = 5, keyManager = {}, verified = {} }) {
    const registry = beginCell()
        .storeMaybeRef(null) // proxy hashes
        .storeMaybeRef(null) // registered proxies
        .storeUint(lastProxySeqno, 32)
        .storeMaybeRef(null) // worker hashes
        .storeMaybeRef(null) // model hashes
        .endCell();
    const b = beginCell().storeAddress(owner).storeUint(version, 32).storeRef(registry).storeRef(params);
    if (structVersion >= 4) b.storeRef(keyManagerCell(keyManager));
    if (structVersion >= 5) b.storeRef(verifiedKeysCell(verified));
    return b.endCell();
}

/** The struct-4 key-manager cell; `publicKeys` = [{key: bigint, type, expireAt}]. */
export function keyManagerCell({ publicKeys = [], publicKey = 0n, imageHash = 0n, addr = '' } = {}) {
    const d = Dictionary.empty(Dictionary.Keys.BigUint(256), publicKeyInfoValue);
    for (const k of publicKeys) d.set(k.key, { type: k.type, expireAt: k.expireAt });
    return beginCell().storeDict(d).storeUint(publicKey, 256).storeUint(imageHash, 256).storeBuilder(proxyDescription(addr)).endCell();
}

/** The struct-5 verified-keys cell; each list holds bigint keys. */
export function verifiedKeysCell({ proxy = [], worker = [], keyManager = [] } = {}) {
    const set = (keys) => {
        const d = Dictionary.empty(Dictionary.Keys.BigUint(256), rawSliceValue);
        for (const k of keys) d.set(k, beginCell().endCell());
        return d;
    };
    return beginCell().storeDict(set(proxy)).storeDict(set(worker)).storeDict(set(keyManager)).endCell();
}

const publicKeyInfoValue = {
    serialize: (src, builder) => builder.storeUint(src.type, 8).storeUint(src.expireAt, 32),
    parse: (src) => {
        const v = { type: src.loadUint(8), expireAt: src.loadUint(32) };
        src.endParse();
        return v;
    },
};

function loadNetAddr(s) {
    if (s.loadUint(1) !== 0) throw new Error('net address type bit');
    const len = s.loadUint(7);
    return s.loadBuffer(len).toString('ascii');
}

/** Parses root data the way RootContractConfig::load_from_state does (keys only for hash sets). */
export function parseRootData(cell) {
    const s = cell.beginParse();
    const owner = s.loadAddress();
    const version = s.loadUint(32);
    const reg = s.loadRef().beginParse();
    const params = parseParams(s.loadRef());
    let keyManager = null;
    let verified = null;
    if (params.structVersion >= 4) {
        const k = s.loadRef().beginParse();
        const d = k.loadDict(Dictionary.Keys.BigUint(256), publicKeyInfoValue);
        const publicKeys = d.keys().sort(cmp).map((key) => ({ key, ...d.get(key) }));
        keyManager = { publicKeys, publicKey: k.loadUintBig(256), imageHash: k.loadUintBig(256), addr: loadNetAddr(k) };
        k.endParse();
    }
    if (params.structVersion >= 5) {
        const v = s.loadRef().beginParse();
        const keys = (c) => (c ? hashSetKeys(c) : []);
        verified = { proxy: keys(v.loadMaybeRef()), worker: keys(v.loadMaybeRef()), keyManager: keys(v.loadMaybeRef()) };
        v.endParse();
    }
    s.endParse();
    const keys = (c) => (c ? hashSetKeys(c) : []);
    const proxyHashes = keys(reg.loadMaybeRef());
    const proxiesCell = reg.loadMaybeRef();
    const lastProxySeqno = reg.loadUint(32);
    const workerHashes = keys(reg.loadMaybeRef());
    const modelHashes = keys(reg.loadMaybeRef());
    reg.endParse();
    const proxies = {};
    if (proxiesCell) {
        const d = Dictionary.loadDirect(Dictionary.Keys.Uint(32), rawSliceValue, proxiesCell);
        for (const [k, v] of d) {
            const vs = v.beginParse();
            const type = vs.loadUint(1);
            const len = vs.loadUint(7);
            proxies[k] = { type, text: vs.loadBuffer(len).toString('ascii') };
        }
    }
    return { owner, version, proxyHashes, proxies, lastProxySeqno, workerHashes, modelHashes, params, keyManager, verified };
}

const cmp = (a, b) => (a < b ? -1 : a > b ? 1 : 0);

// A dictionary value that is "the rest of the leaf" (an empty slice for hash sets, a description for proxies).
const rawSliceValue = {
    serialize: (src, builder) => builder.storeSlice(src.beginParse()),
    parse: (src) => {
        const b = beginCell().storeSlice(src);
        return b.endCell();
    },
};

function hashSetKeys(cell) {
    const d = Dictionary.loadDirect(Dictionary.Keys.BigUint(256), rawSliceValue, cell);
    return d.keys().sort(cmp);
}

export function proxyData({ owner, publicKey, root, state = 0, balance = 0n, stake = 0n, unlockTs = 0, params }) {
    return beginCell()
        .storeAddress(owner)
        .storeBuffer(publicKey, 32)
        .storeAddress(root)
        .storeUint(state, 2)
        .storeCoins(balance)
        .storeCoins(stake)
        .storeUint(unlockTs, 32)
        .storeRef(params)
        .endCell();
}

export function clientData({ owner, proxy, publicKey, stake, params, state = 0, balance = 0n, tokensUsed = 0n, unlockTs = 0, secretHash = 0n }) {
    const constData = beginCell().storeAddress(owner).storeAddress(proxy).storeBuffer(publicKey, 32).endCell();
    return beginCell()
        .storeUint(state, 2)
        .storeCoins(balance)
        .storeCoins(stake)
        .storeUint(tokensUsed, 64)
        .storeUint(unlockTs, 32)
        .storeUint(secretHash, 256)
        .storeRef(constData)
        .storeRef(params)
        .endCell();
}

export function workerData({ owner, proxy, publicKey, params, state = 0, tokens = 0n }) {
    return beginCell()
        .storeAddress(owner)
        .storeAddress(proxy)
        .storeBuffer(publicKey, 32)
        .storeUint(state, 2)
        .storeUint(tokens, 64)
        .storeRef(params)
        .endCell();
}

/** StateInit {code, data} and its basechain address. */
export function stateInit(code, data) {
    const init = { code, data };
    return { init, address: contractAddress(0, init) };
}

export function proxyKeys(seedText = 'cocoon-proxy-key') {
    const seed = Buffer.alloc(32);
    Buffer.from(seedText).copy(seed);
    return keyPairFromSeed(seed);
}

// ---------------------------------------------------------------------------------------------------------
// Message bodies
// ---------------------------------------------------------------------------------------------------------

let nextQueryId = 1n;
/** Query ids are a simple counter so that runs are reproducible (see resetQueryIds). */
export const qid = () => nextQueryId++;
/** Restarts the query-id counter (the scenario does, so its message bodies are identical on every run). */
export function resetQueryIds(start = 1n) {
    nextQueryId = start;
}

const head = (op, queryId) => beginCell().storeUint(op, 32).storeUint(queryId, 64);

export const body = {
    rootHash: (op, hash, queryId = qid()) => head(op, queryId).storeUint(hash, 256).endCell(),
    rootRegisterProxy: (text, queryId = qid()) => head(OP.rootRegisterProxy, queryId).storeBuilder(proxyDescription(text)).endCell(),
    rootUnregisterProxy: (seqno, queryId = qid()) => head(OP.rootUnregisterProxy, queryId).storeUint(seqno, 32).endCell(),
    rootUpdateProxy: (seqno, text, queryId = qid()) =>
        head(OP.rootUpdateProxy, queryId).storeUint(seqno, 32).storeBuilder(proxyDescription(text)).endCell(),
    rootChangeFees: (price, fee, queryId = qid()) => head(OP.rootChangeFees, queryId).storeCoins(price).storeCoins(fee).endCell(),
    rootChangeParams: (p, queryId = qid()) =>
        head(OP.rootChangeParams, queryId)
            .storeCoins(p.pricePerToken)
            .storeCoins(p.workerFeePerToken)
            .storeUint(p.proxyDelayBeforeClose, 32)
            .storeUint(p.clientDelayBeforeClose, 32)
            .storeCoins(p.minProxyStake)
            .storeCoins(p.minClientStake)
            .endCell(),
    rootUpgradeContracts: (proxy, worker, client, queryId = qid()) =>
        head(OP.rootUpgradeContracts, queryId).storeRef(proxy).storeRef(worker).storeRef(client).endCell(),
    rootUpgradeCode: (code, queryId = qid()) => head(OP.rootUpgradeCode, queryId).storeRef(code).endCell(),
    rootReset: (queryId = qid()) => head(OP.rootReset, queryId).endCell(),
    rootUpgradeFull: (data, code, queryId = qid()) => head(OP.rootUpgradeFull, queryId).storeRef(data).storeRef(code).endCell(),
    rootChangeOwner: (owner, queryId = qid()) => head(OP.rootChangeOwner, queryId).storeAddress(owner).endCell(),
    rootChangeKeyManager: (publicKey, imageHash, addr, queryId = qid()) =>
        head(OP.rootChangeKeyManager, queryId).storeUint(publicKey, 256).storeUint(imageHash, 256).storeBuilder(proxyDescription(addr)).endCell(),
    rootAddPublicKey: (key, type, expireAt, queryId = qid()) =>
        head(OP.rootAddPublicKey, queryId).storeUint(key, 256).storeUint(type, 8).storeUint(expireAt, 32).endCell(),
    rootDelPublicKey: (key, queryId = qid()) => head(OP.rootDelPublicKey, queryId).storeUint(key, 256).endCell(),
    rootAddVerifiedKey: (kind, key, queryId = qid()) => head(OP.rootAddVerifiedKey, queryId).storeUint(kind, 8).storeUint(key, 256).endCell(),
    rootDelVerifiedKey: (kind, key, queryId = qid()) => head(OP.rootDelVerifiedKey, queryId).storeUint(kind, 8).storeUint(key, 256).endCell(),

    doNotProcess: (queryId = qid()) => head(OP.doNotProcess, queryId).endCell(),
    /** The proxy node's on-chain DB anchor (notes §4.2). */
    proxySaveState: (seqno, sessionHash, queryId = qid()) =>
        head(OP.doNotProcess, queryId).storeUint(OP.proxySaveState, 32).storeInt(seqno, 32).storeUint(sessionHash, 256).endCell(),

    proxyPayoutRequest: (excessTo, queryId = qid()) => head(OP.extProxyPayoutRequest, queryId).storeAddress(excessTo).endCell(),
    proxyIncreaseStake: (grams, excessTo, queryId = qid()) =>
        head(OP.extProxyIncreaseStake, queryId).storeCoins(grams).storeAddress(excessTo).endCell(),
    ownerProxyClose: (excessTo, queryId = qid()) => head(OP.ownerProxyClose, queryId).storeAddress(excessTo).endCell(),
    text: (t) => beginCell().storeUint(0, 32).storeStringTail(t).endCell(),

    workerRegister: (excessTo, queryId = qid()) => head(OP.ownerWorkerRegister, queryId).storeAddress(excessTo).endCell(),

    clientTopUp: (amount, excessTo, queryId = qid()) => head(OP.extClientTopUp, queryId).storeCoins(amount).storeAddress(excessTo).endCell(),
    clientChangeSecretHashAndTopUp: (amount, hash, excessTo, queryId = qid()) =>
        head(OP.ownerClientChangeSecretHashAndTopUp, queryId).storeCoins(amount).storeUint(hash, 256).storeAddress(excessTo).endCell(),
    clientRegister: (nonce, excessTo, queryId = qid()) =>
        head(OP.ownerClientRegister, queryId).storeUint(nonce, 64).storeAddress(excessTo).endCell(),
    clientChangeSecretHash: (hash, excessTo, queryId = qid()) =>
        head(OP.ownerClientChangeSecretHash, queryId).storeUint(hash, 256).storeAddress(excessTo).endCell(),
    clientIncreaseStake: (stake, excessTo, queryId = qid()) =>
        head(OP.ownerClientIncreaseStake, queryId).storeCoins(stake).storeAddress(excessTo).endCell(),
    clientWithdraw: (excessTo, queryId = qid()) => head(OP.ownerClientWithdraw, queryId).storeAddress(excessTo).endCell(),
    clientRequestRefund: (excessTo, queryId = qid()) => head(OP.ownerClientRequestRefund, queryId).storeAddress(excessTo).endCell(),

    /** A client report as a client contract would send it (used to forge reports from the wrong sender). */
    clientProxyRequest: ({ owner, state = 0, balance = 0n, stake = 0n, tokensUsed = 0n, secretHash = 0n, payload = null }, queryId = qid()) =>
        head(OP.clientProxyRequest, queryId)
            .storeAddress(owner)
            .storeRef(beginCell().storeUint(state, 2).storeCoins(balance).storeCoins(stake).storeUint(tokensUsed, 64).storeUint(secretHash, 256).endCell())
            .storeMaybeRef(payload)
            .endCell(),
    workerProxyRequest: ({ owner, state = 0, tokens = 0n, payload = null }, queryId = qid()) =>
        head(OP.workerProxyRequest, queryId).storeAddress(owner).storeUint(state, 2).storeUint(tokens, 64).storeMaybeRef(payload).endCell(),
    refundGrantedPayload: (coins, excessTo) => beginCell().storeUint(OP.clientProxyRefundGranted, 32).storeCoins(coins).storeAddress(excessTo).endCell(),
    workerPayoutPayload: (workerPart, proxyPart, excessTo) =>
        beginCell().storeUint(OP.workerProxyPayoutRequest, 32).storeCoins(workerPart).storeCoins(proxyPart).storeAddress(excessTo).endCell(),
};

/** `type:1=0 len:7 ascii` (RootContractConfig parses "ip:port_workers ip:port_clients"). */
export function proxyDescription(text) {
    const bytes = Buffer.from(text, 'ascii');
    if (bytes.length > 127) throw new Error('proxy description longer than 127 bytes');
    return beginCell().storeUint(0, 1).storeUint(bytes.length, 7).storeBuffer(bytes);
}

// ---------------------------------------------------------------------------------------------------------
// Proxy-signed messages (notes §4.4)
// ---------------------------------------------------------------------------------------------------------

/** Payload of charge / grant-refund / payout / last-payout: op, qid, cumulative tokens, target contract. */
export function tokensPayload(op, queryId, tokens, target) {
    return beginCell().storeUint(op, 32).storeUint(queryId, 64).storeUint(tokens, 64).storeAddress(target).endCell();
}

/** Payload of proxy close / close-complete. */
export function closePayload(op, queryId, target) {
    return beginCell().storeUint(op, 32).storeUint(queryId, 64).storeAddress(target).endCell();
}

/** Envelope: op, qid, send_excesses_to, Ed25519(payload hash), ^payload. */
export function signedEnvelope(op, queryId, excessTo, payload, secretKey) {
    const signature = sign(payload.hash(), secretKey);
    return beginCell().storeUint(op, 32).storeUint(queryId, 64).storeAddress(excessTo).storeBuffer(signature).storeRef(payload).endCell();
}

export function signedTokens(op, tokens, target, excessTo, secretKey, queryId = qid()) {
    return signedEnvelope(op, queryId, excessTo, tokensPayload(op, queryId, tokens, target), secretKey);
}

export function signedClose(op, target, excessTo, secretKey, queryId = qid()) {
    return signedEnvelope(op, queryId, excessTo, closePayload(op, queryId, target), secretKey);
}

/**
 * The key manager's `root_add_public_key_signed` (C++ KeyManagerRunner::generate_key): payload
 * `op qid public_key:bits256 key_type:uint8 valid_until:uint32`, signed with the key manager's key.
 */
export function signedAddPublicKey(key, type, expireAt, excessTo, secretKey, queryId = qid()) {
    const payload = beginCell().storeUint(OP.rootAddPublicKeySigned, 32).storeUint(queryId, 64).storeUint(key, 256).storeUint(type, 8).storeUint(expireAt, 32).endCell();
    return signedEnvelope(OP.rootAddPublicKeySigned, queryId, excessTo, payload, secretKey);
}

// ---------------------------------------------------------------------------------------------------------
// Get-method readers
// ---------------------------------------------------------------------------------------------------------

export async function getRootData(bc, address) {
    const r = (await bc.runGetMethod(address, 'get_cocoon_data')).stackReader;
    return {
        version: r.readNumber(),
        lastProxySeqno: r.readNumber(),
        paramsVersion: r.readNumber(),
        uniqueId: r.readNumber(),
        isTest: r.readNumber(),
        pricePerToken: r.readBigNumber(),
        workerFeePerToken: r.readBigNumber(),
        minProxyStake: r.readBigNumber(),
        minClientStake: r.readBigNumber(),
        owner: r.readAddress(),
    };
}

export async function getProxyData(bc, address) {
    const r = (await bc.runGetMethod(address, 'get_cocoon_proxy_data')).stackReader;
    return {
        owner: r.readAddress(),
        publicKey: r.readBigNumber(),
        root: r.readAddress(),
        state: r.readNumber(),
        balance: r.readBigNumber(),
        stake: r.readBigNumber(),
        unlockTs: r.readNumber(),
        pricePerToken: r.readBigNumber(),
        workerFeePerToken: r.readBigNumber(),
        minProxyStake: r.readBigNumber(),
        minClientStake: r.readBigNumber(),
        paramsVersion: r.readNumber(),
    };
}

export async function getClientData(bc, address) {
    const r = (await bc.runGetMethod(address, 'get_cocoon_client_data')).stackReader;
    return {
        owner: r.readAddress(),
        proxy: r.readAddress(),
        publicKey: r.readBigNumber(),
        state: r.readNumber(),
        balance: r.readBigNumber(),
        stake: r.readBigNumber(),
        tokensUsed: r.readBigNumber(),
        unlockTs: r.readNumber(),
        secretHash: r.readBigNumber(),
    };
}

export async function getWorkerData(bc, address) {
    const r = (await bc.runGetMethod(address, 'get_cocoon_worker_data')).stackReader;
    return {
        owner: r.readAddress(),
        proxy: r.readAddress(),
        publicKey: r.readBigNumber(),
        state: r.readNumber(),
        tokens: r.readBigNumber(),
    };
}

export { Address, beginCell, Cell, toNano };
