// The full client -> proxy -> worker -> owner cycle with real wallets, checking the money invariant: no
// nanoTON is created or lost (every balance change is a transfer or a fee), and every party ends up with
// exactly what the token counts say. Also: a standard wallet contract (from @ton/ton) as a client owner, and
// the exported scenario (tests/scenario-full-cycle.json, for the Rust executor) being current.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { WalletContractV5R1 } from '@ton/ton';
import { keyPairFromSeed } from '@ton/crypto';
import { internal as walletMessage, SendMode } from '@ton/core';
import { createNetwork, expectTx, balanceOf, findTx, outMessages } from './lib/fixture.mjs';
import { runFullCycle } from './lib/scenario.mjs';
import { OP, STATE, toNano, getClientData, getWorkerData, getProxyData, body, signedTokens, STORAGE_ESTIMATE } from './lib/cocoon.mjs';

test('full cycle: money is conserved and every party gets exactly its share', async () => {
    const net = await createNetwork({ deployRoot: false, deployProxy: false });
    const accounts = [...Object.values(net.w).map((w) => w.address), net.root.address, net.proxy.address, net.client.address, net.client2.address, net.worker.address];
    const total = async () => {
        let sum = 0n;
        for (const a of accounts) sum += await balanceOf(net.bc, a);
        return sum;
    };
    const start = await total();

    const steps = await runFullCycle(net, 'wallets');

    // 1. Every step went through: no failed compute phase, no aborted action phase, no bounce.
    for (const s of steps) {
        for (const t of s.txs) {
            assert.ok(!t.bounced, `${s.name}: unexpected bounce on ${t.account}`);
            assert.ok(t.success || t.computeSkipped, `${s.name}: ${t.account} failed with exit ${t.exitCode}`);
            // Only the 1-nanoTON reports to the proxy skip compute (no gas bought) - by design.
            if (t.computeSkipped) assert.equal(t.account, 'proxy', `${s.name}: only proxy reports may skip compute`);
        }
    }

    // 2. Conservation: start = end + fees charged in transactions + forwarding fees carried by messages.
    let fees = 0n;
    for (const s of steps) for (const t of s.txs) {
        fees += t.totalFees;
        for (const o of t.out) fees += o.forwardFee;
    }
    const end = await total();
    assert.equal(start - end, fees, `created or lost: ${start - end - fees} nanoTON`);

    // 3. Shares. Payouts (op 0xc59a7cd3) per recipient, summed over the whole run.
    const paid = {};
    for (const s of steps) for (const t of s.txs) for (const o of t.out) {
        if (o.op === OP.payout) paid[o.to] = (paid[o.to] ?? 0n) + o.value;
    }
    const price = net.params.pricePerToken;
    const fee = net.params.workerFeePerToken;
    // client 1: deposited 12 TON, used 1.6M tokens -> 3.2 TON; the rest (8 withdrawn + 0.8 granted) came back.
    assert.equal(paid.clientOwner, toNano('12') - 1_600_000n * price);
    // the worker earned its fee on 1.6M tokens
    assert.equal(paid.workerOwner, 1_600_000n * fee);
    // client 2 (owned by the stranger): deposited 3 TON, used 0.5M tokens -> 1 TON; 1 TON at the refund
    // request (above the stake) and 1 TON forced from the proxy's stake after the delay.
    assert.equal(paid.stranger, toNano('3') - 500_000n * price);

    // 4. End state: everything closed, the proxy left with its storage reserve only.
    assert.equal((await getClientData(net.bc, net.client.address)).state, STATE.closed);
    assert.equal((await getClientData(net.bc, net.client2.address)).state, STATE.closed);
    assert.equal((await getWorkerData(net.bc, net.worker.address)).state, STATE.closed);
    const pd = await getProxyData(net.bc, net.proxy.address);
    assert.deepEqual([pd.state, pd.balance, pd.stake], [STATE.closed, 0n, 0n]);
    assert.equal(await balanceOf(net.bc, net.proxy.address), STORAGE_ESTIMATE);

    // 5. The proxy owner received the commission on the worker-paid tokens, and at close everything left in
    //    the pool: the stake (5 + 1 TON; the forced refund was paid from the pool, so the stake counter fell
    //    while client 2's own remaining balance stayed) plus client 2's usage that no worker claimed (1 TON),
    //    plus small leftovers (the save-state marker's 0.05 TON, the close-complete value minus its fees).
    const commission = 1_600_000n * (price - fee);
    const closeTx = steps.at(-1).txs.find((t) => t.account === 'proxy');
    const closePayout = closeTx.out.find((o) => o.op === OP.payout).value;
    assert.ok(paid.proxyOwner >= commission + closePayout);
    assert.ok(closePayout > toNano('7.2') && closePayout < toNano('7.25'), `close-complete paid ${closePayout}`);
});

test('a standard wallet (v5r1 from @ton/ton) owns a client and relays a proxy-signed charge', async () => {
    const net = await createNetwork();
    const kp = keyPairFromSeed(Buffer.alloc(32, 7));
    const wallet = net.bc.openContract(WalletContractV5R1.create({ workchain: 0, publicKey: kp.publicKey }));
    await net.w.stranger.send({ to: wallet.address, value: toNano('20'), bounce: false });
    const clientOf = net.clientFor(wallet.address);

    const transfer = async (to, value, msgBody, init) => {
        const seqno = await wallet.getSeqno();
        return wallet.sendTransfer({
            seqno,
            secretKey: kp.secretKey,
            sendMode: SendMode.PAY_GAS_SEPARATELY,
            messages: [walletMessage({ to, value, body: msgBody, init, bounce: true })],
        });
    };
    let r = await transfer(clientOf.address, toNano('5.5'), body.clientTopUp(toNano('5'), wallet.address), clientOf.init);
    expectTx(r, { to: clientOf.address, deploy: true, success: true });
    expectTx(r, { to: net.proxy.address, success: true });
    // Owner-only op from the wallet is accepted (the wallet is the owner).
    r = await transfer(clientOf.address, toNano('0.2'), body.clientRegister(9n, wallet.address));
    expectTx(r, { to: clientOf.address, success: true });
    // The same wallet relays the proxy's signed charge; excesses come back to it.
    r = await transfer(clientOf.address, toNano('0.3'), signedTokens(OP.clientChargeSigned, 1000n, clientOf.address, wallet.address, net.keys.secretKey));
    const tx = expectTx(r, { to: clientOf.address, success: true });
    assert.ok(outMessages(tx).some((o) => o.op === OP.excesses && o.to.equals(wallet.address)));
    assert.ok(findTx(r, { to: wallet.address, op: OP.excesses, success: true }));
    const d = await getClientData(net.bc, clientOf.address);
    assert.equal(d.balance, toNano('5') - 1000n * net.params.pricePerToken);
    assert.ok(d.owner.equals(wallet.address));
});

test('tests/scenario-full-cycle.json is what the current contracts do (exit codes, gas, fees)', async () => {
    const file = path.join(path.dirname(fileURLToPath(import.meta.url)), 'scenario-full-cycle.json');
    const recorded = JSON.parse(fs.readFileSync(file, 'utf8'));
    const net = await createNetwork({ deployRoot: false, deployProxy: false });
    const steps = await runFullCycle(net, 'inject');
    assert.equal(steps.length, recorded.steps.length, 'regenerate with `npm run gas`');
    for (const [i, s] of steps.entries()) {
        const rec = recorded.steps[i];
        assert.equal(s.name, rec.name);
        assert.equal(s.body.toBoc().toString('base64'), rec.message.body, `${s.name}: message body`);
        const now = s.txs.map((t) => [t.account, t.exitCode, t.gasUsed, t.totalFees.toString()]);
        const then = rec.transactions.map((t) => [t.account, t.exitCode, t.gasUsed, t.totalFees]);
        assert.deepEqual(now, then, `${s.name}: transactions differ (regenerate with \`npm run gas\`)`);
        for (const [k, v] of Object.entries(s.after)) {
            assert.deepEqual(v && { balance: v.balance.toString(), dataHash: v.dataHash }, rec.after[k], `${s.name}: ${k} state`);
        }
    }
});
