// The full money cycle of a Cocoon network, as one ordered list of steps:
// clients deposit -> the proxy charges -> workers cash out -> the proxy owner collects commission ->
// clients are refunded (granted, and forced from the stake after the close delay) -> the proxy closes.
//
// What lives here: the step list and a recorder of what each step did (transactions, exit codes, gas, fees,
// payouts). It runs in two modes: `wallets` (every message really paid by a sandbox treasury, used by the
// money-invariant test) and `inject` (messages delivered as if from the owners' addresses, no wallet code;
// used by scripts/gas-report.mjs to export tests/scenario-full-cycle.json, which the Rust executor can replay
// exactly). What must not: assertions (cycle.test.mjs makes them).

import { beginCell, toNano } from '@ton/core';
import { flattenTransaction } from '@ton/test-utils';
import { send, inject, START_TIME, CODES } from './fixture.mjs';
import { body, OP, VERIFIED, signedTokens, signedClose, signedAddPublicKey, resetQueryIds } from './cocoon.mjs';

/** Human labels of every account the scenario touches (for reports). */
export function accountLabels(net) {
    const labels = new Map();
    const add = (name, addr) => labels.set(addr.toRawString(), name);
    for (const [name, w] of Object.entries(net.w)) add(name, w.address);
    add('root', net.root.address);
    add('proxy', net.proxy.address);
    add('client', net.client.address);
    add('client2', net.client2.address);
    add('worker', net.worker.address);
    return labels;
}

function summarize(tx, labels) {
    const f = flattenTransaction(tx);
    const d = tx.description;
    const compute = d.type === 'generic' ? d.computePhase : undefined;
    const outs = [];
    for (const m of tx.outMessages.values()) {
        if (m.info.type !== 'internal') continue;
        const s = m.body.beginParse();
        outs.push({
            to: labels.get(m.info.dest.toRawString()) ?? m.info.dest.toRawString(),
            value: m.info.value.coins,
            forwardFee: m.info.forwardFee,
            op: s.remainingBits >= 32 ? s.loadUint(32) : null,
        });
    }
    return {
        account: labels.get(f.on.toRawString()) ?? f.on.toRawString(),
        from: f.from ? labels.get(f.from.toRawString()) ?? f.from.toRawString() : null,
        op: f.op ?? null,
        bounced: Boolean(f.inMessageBounced),
        success: Boolean(f.success),
        aborted: Boolean(f.aborted),
        computeSkipped: compute?.type === 'skipped',
        exitCode: compute?.type === 'vm' ? compute.exitCode : null,
        gasUsed: compute?.type === 'vm' ? Number(compute.gasUsed) : 0,
        totalFees: tx.totalFees.coins,
        out: outs,
        raw: tx,
    };
}

/**
 * Runs the cycle on `net` (created with deployProxy: false). `mode` is 'wallets' or 'inject'.
 * Returns {steps: [{name, target, from, value, body, init, now, txs}], net}.
 */
export async function runFullCycle(net, mode = 'wallets') {
    const { bc, w, keys } = net;
    resetQueryIds(1000n);
    const labels = accountLabels(net);
    const steps = [];

    async function step(name, fromWallet, to, value, msgBody, init) {
        const now = bc.now;
        const r = mode === 'wallets'
            ? await send(bc, fromWallet, to, value, msgBody, { init })
            : await inject(bc, fromWallet.address, to, value, msgBody, { init });
        const txs = r.transactions.map((tx) => summarize(tx, labels));
        // State of the Cocoon contracts after the step (balance, data hash), for differential replays.
        const after = {};
        for (const k of ['root', 'proxy', 'client', 'client2', 'worker']) {
            const c = await bc.getContract(net[k].address);
            const st = c.accountState;
            after[k] = st?.type === 'active' ? { balance: c.balance, dataHash: st.state.data.hash().toString('hex') } : null;
        }
        steps.push({ name, from: labels.get(fromWallet.address.toRawString()), target: labels.get(to.toRawString()), to, fromAddress: fromWallet.address, value, body: msgBody, init, now, txs, after });
        return txs;
    }

    const signed = (op, tokens, target) => signedTokens(op, tokens, target, w.relayer.address, keys.secretKey);
    const C = net.client.address;
    const C2 = net.client2.address;
    const W = net.worker.address;
    const P = net.proxy.address;
    const R = net.root.address;
    const rootOp = (name, b) => step(name, w.rootOwner, R, toNano('0.2'), b);

    // --- the registry
    await step('root: deploy', w.rootOwner, R, toNano('1'), beginCell().endCell(), net.root.init);
    await rootOp('root: add_worker_type', body.rootHash(OP.rootAddWorkerType, 0xaaaan));
    await rootOp('root: del_worker_type', body.rootHash(OP.rootDelWorkerType, 0xaaaan));
    await rootOp('root: add_worker_type', body.rootHash(OP.rootAddWorkerType, 0xa1n));
    await rootOp('root: add_model_type', body.rootHash(OP.rootAddModelType, 0xb1n));
    await rootOp('root: del_model_type', body.rootHash(OP.rootDelModelType, 0xbbbbn));
    await rootOp('root: add_proxy_type', body.rootHash(OP.rootAddProxyType, 0xc1n));
    await rootOp('root: del_proxy_type', body.rootHash(OP.rootDelProxyType, 0xccccn));
    await rootOp('root: register_proxy', body.rootRegisterProxy('127.0.0.1:11001 127.0.0.1:11002'));
    await rootOp('root: register_proxy', body.rootRegisterProxy('127.0.0.2:11001'));
    await rootOp('root: update_proxy', body.rootUpdateProxy(2, '127.0.0.2:11001 127.0.0.2:11002'));
    await rootOp('root: unregister_proxy', body.rootUnregisterProxy(2));
    await rootOp('root: change_fees', body.rootChangeFees(net.params.pricePerToken, net.params.workerFeePerToken));
    await rootOp('root: change_params', body.rootChangeParams(net.params));
    await rootOp('root: upgrade_contracts', body.rootUpgradeContracts(CODES.proxy, CODES.worker, CODES.client));
    await rootOp('root: change_owner', body.rootChangeOwner(w.rootOwner.address));
    // the key manager (struct version 4) and the verified keys (5)
    const km = net.keyManagerKeys;
    const kmKey = BigInt('0x' + km.publicKey.toString('hex'));
    const dayLater = START_TIME + 86400;
    await rootOp('root: change_key_manager', body.rootChangeKeyManager(kmKey, 0x1b1n, '127.0.0.1:13001'));
    await rootOp('root: add_public_key', body.rootAddPublicKey(0xe1n, 1, dayLater));
    await step('root: add_public_key_signed', w.relayer, R, toNano('0.4'), signedAddPublicKey(0xe2n, 1, dayLater, w.relayer.address, km.secretKey));
    await rootOp('root: del_public_key', body.rootDelPublicKey(0xe1n));
    await rootOp('root: add_verified_key (proxy)', body.rootAddVerifiedKey(VERIFIED.proxy, 0xf1n));
    await rootOp('root: add_verified_key (worker)', body.rootAddVerifiedKey(VERIFIED.worker, 0xf2n));
    await rootOp('root: add_verified_key (key manager)', body.rootAddVerifiedKey(VERIFIED.keyManager, 0xf3n));
    await rootOp('root: del_verified_key', body.rootDelVerifiedKey(VERIFIED.worker, 0xf2n));
    await rootOp('root: upgrade_code', body.rootUpgradeCode(CODES.root));

    // --- the proxy comes up with a stake
    await step('proxy: deploy + ext_proxy_increase_stake', w.proxyOwner, P, toNano('5.2'), body.proxyIncreaseStake(toNano('5'), w.proxyOwner.address), net.proxy.init);

    // --- client 1 deposits and configures
    await step('client: deploy + ext_client_top_up', w.clientOwner, C, toNano('10.5'), body.clientTopUp(toNano('10'), w.clientOwner.address), net.client.init);
    await step('client: owner_client_register', w.clientOwner, C, toNano('0.2'), body.clientRegister(0x1122334455667788n, w.clientOwner.address));
    await step('client: owner_client_change_secret_hash', w.clientOwner, C, toNano('0.2'), body.clientChangeSecretHash(0x5ec2e7n, w.clientOwner.address));
    await step('client: owner_client_change_secret_hash_and_top_up', w.clientOwner, C, toNano('2.2'), body.clientChangeSecretHashAndTopUp(toNano('2'), 0x5ec2e8n, w.clientOwner.address));
    await step('client: owner_client_increase_stake', w.clientOwner, C, toNano('0.2'), body.clientIncreaseStake(toNano('2'), w.clientOwner.address));

    // --- a worker appears; the proxy charges; the client takes back what is above its stake
    await step('worker: deploy + owner_worker_register', w.workerOwner, W, toNano('0.5'), body.workerRegister(w.workerOwner.address), net.worker.init);
    await step('client: ext_client_charge_signed', w.relayer, C, toNano('0.3'), signed(OP.clientChargeSigned, 1_000_000n, C));
    await step('client: owner_client_withdraw', w.clientOwner, C, toNano('0.2'), body.clientWithdraw(w.clientOwner.address));
    await step('client: ext_client_charge_signed', w.relayer, C, toNano('0.3'), signed(OP.clientChargeSigned, 1_500_000n, C));

    // --- the worker cashes out; the proxy owner collects the commission
    await step('worker: ext_worker_payout_request_signed', w.relayer, W, toNano('0.3'), signed(OP.workerPayoutSigned, 1_500_000n, W));
    await step('proxy: ext_proxy_payout_request', w.stranger, P, toNano('0.2'), body.proxyPayoutRequest(w.stranger.address));
    await step('proxy: ext_proxy_increase_stake', w.proxyOwner, P, toNano('1.2'), body.proxyIncreaseStake(toNano('1'), w.proxyOwner.address));
    await step('proxy: save-state marker (do_not_process)', w.proxyOwner, P, toNano('0.05'), body.proxySaveState(7, 0x5e55n));

    // --- settlement: the proxy grants client 1 its refund, the worker takes its last payout
    await step('client: ext_client_grant_refund_signed', w.relayer, C, toNano('0.3'), signed(OP.clientGrantRefundSigned, 1_600_000n, C));
    await step('worker: ext_worker_last_payout_request_signed', w.relayer, W, toNano('0.3'), signed(OP.workerLastPayoutSigned, 1_600_000n, W));
    await step('proxy: text "w"', w.proxyOwner, P, toNano('0.2'), body.text('w'));

    // --- client 2 is never granted its refund: it closes by itself and is paid from the proxy's stake
    await step('client2: deploy + ext_client_top_up', w.stranger, C2, toNano('3.5'), body.clientTopUp(toNano('3'), w.stranger.address), net.client2.init);
    await step('client2: ext_client_charge_signed', w.relayer, C2, toNano('0.3'), signed(OP.clientChargeSigned, 500_000n, C2));
    await step('client2: owner_client_request_refund (closing)', w.stranger, C2, toNano('0.2'), body.clientRequestRefund(w.stranger.address));
    bc.now = START_TIME + net.params.clientDelayBeforeClose + 1;
    await step('client2: owner_client_request_refund (forced)', w.stranger, C2, toNano('0.2'), body.clientRequestRefund(w.stranger.address));

    // --- the proxy closes in two signed steps around its delay
    await step('proxy: ext_proxy_close_request_signed', w.relayer, P, toNano('0.2'), signedClose(OP.proxyCloseSigned, P, w.relayer.address, keys.secretKey));
    bc.now = bc.now + net.params.proxyDelayBeforeClose;
    await step('proxy: ext_proxy_close_complete_request_signed', w.relayer, P, toNano('0.2'), signedClose(OP.proxyCloseCompleteSigned, P, w.relayer.address, keys.secretKey));

    return steps;
}
