// Measures gas per contract operation on @ton/sandbox and exports the full-cycle scenario.
//
//   node scripts/gas-report.mjs            print the gas table (markdown)
//   node scripts/gas-report.mjs --write    also rewrite the table in ../docs/CONTRACTS.md (between the
//                                          gas-table markers) and tests/scenario-full-cycle.json
//
// How it measures: every number is the compute-phase `gas_used` of the transaction on the contract that
// handles the op, taken from a real sandbox run (emulator of @ton/sandbox 0.41.0 with its default mainnet
// config). The main source is the full-cycle scenario (tests/lib/scenario.mjs) run in `inject` mode;
// operations the cycle does not reach are measured from a snapshot of the network, one at a time.
// Gas depends on the code path only, so these are exact for the given inputs; storage/forward fees are
// not included (they depend on the config, not on the contract).

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { toNano } from '@ton/core';
import { createNetwork, send, deployClient, deployWorker, findTx, START_TIME, CODES } from '../tests/lib/fixture.mjs';
import { runFullCycle } from '../tests/lib/scenario.mjs';
import { body, OP, signedTokens } from '../tests/lib/cocoon.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const contractsDir = path.resolve(here, '..');
const docsFile = path.resolve(contractsDir, '..', 'docs', 'CONTRACTS.md');
const scenarioFile = path.join(contractsDir, 'tests', 'scenario-full-cycle.json');

const hex = (n) => '0x' + n.toString(16).padStart(8, '0');

async function measureCycle() {
    const net = await createNetwork({ deployRoot: false, deployProxy: false });
    const steps = await runFullCycle(net, 'inject');
    return { net, steps };
}

/** Ops the cycle does not reach: each from a fresh snapshot. Returns [{name, contract, gas, proxyGas?}]. */
async function measureExtras() {
    const net = await createNetwork();
    await deployClient(net, toNano('10'));
    await deployWorker(net);
    const base = net.bc.snapshot();
    const out = [];
    const once = async (name, contract, from, to, value, msgBody, expectExit = 0) => {
        await net.bc.loadFrom(base);
        const r = await send(net.bc, from, to, value, msgBody);
        const tx = findTx(r, { to });
        const d = tx.tx.description;
        if (tx.flat.exitCode !== expectExit) throw new Error(`${name}: exit ${tx.flat.exitCode}, expected ${expectExit}`);
        out.push({ name, contract, op: msgBody.beginParse().loadUint(32), gas: Number(d.computePhase.gasUsed) });
    };
    const { w } = net;
    await once('proxy: owner_proxy_close', 'proxy', w.proxyOwner, net.proxy.address, toNano('0.2'), body.ownerProxyClose(w.proxyOwner.address));
    await once('proxy: text "c"', 'proxy', w.proxyOwner, net.proxy.address, toNano('0.2'), body.text('c'));
    await once('root: reset', 'root', w.rootOwner, net.root.address, toNano('0.2'), body.rootReset());
    await once('root: upgrade_full', 'root', w.rootOwner, net.root.address, toNano('0.2'),
        body.rootUpgradeFull((await net.bc.getContract(net.root.address)).accountState.state.data, CODES.root));
    // Rejections cost gas too (paid from the bounced value): the cheapest and the signature path.
    await once('root: any op from a non-owner (rejected, 1010)', 'root', w.stranger, net.root.address, toNano('0.2'), body.rootReset(), 1010);
    await once('client: charge with a bad signature (rejected, 1007)', 'client', w.relayer, net.client.address, toNano('0.3'),
        signedTokens(OP.clientChargeSigned, 10n, net.client.address, w.relayer.address, net.wrongKeys.secretKey), 1007);
    await once('client: stale charge (rejected, 1000)', 'client', w.relayer, net.client.address, toNano('0.3'),
        signedTokens(OP.clientChargeSigned, 0n, net.client.address, w.relayer.address, net.keys.secretKey), 1000);
    return out;
}

function cycleRows(steps) {
    const rows = [];
    for (const s of steps) {
        const own = s.txs.find((t) => t.account === s.target && !t.bounced);
        const atProxy = s.target !== 'proxy' ? s.txs.find((t) => t.account === 'proxy') : undefined;
        let proxyCell = '';
        if (atProxy) proxyCell = atProxy.computeSkipped ? 'skipped (1 nanoTON report)' : String(atProxy.gasUsed);
        rows.push({ name: s.name, contract: s.target, op: own.op, gas: own.gasUsed, proxyCell, exit: own.exitCode });
    }
    return rows;
}

function table(cycle, extras) {
    const lines = [
        '| step (contract: op) | op code | gas on the contract | gas at the proxy (forwarded report) |',
        '|---|---|---:|---:|',
    ];
    const seen = new Set();
    for (const r of cycle) {
        const key = `${r.name}|${r.gas}|${r.proxyCell}`;
        if (seen.has(key)) continue;
        seen.add(key);
        lines.push(`| ${r.name} | ${r.op === null ? '(empty)' : hex(r.op)} | ${r.gas} | ${r.proxyCell || '-'} |`);
    }
    for (const r of extras) lines.push(`| ${r.name} | ${hex(r.op)} | ${r.gas} | - |`);
    return lines.join('\n');
}

function scenarioJson(net, steps, rootData) {
    const accounts = {};
    for (const [k, wlt] of Object.entries(net.w)) accounts[k] = wlt.address.toRawString();
    for (const k of ['root', 'proxy', 'client', 'client2', 'worker']) accounts[k] = net[k].address.toRawString();
    const boc = (c) => c.toBoc().toString('base64');
    return {
        description:
            'Full Cocoon money cycle on @ton/sandbox 0.41.0 (default config). Each step delivers one internal message ' +
            '(ihr_disabled, bounce as given, fwd_fee 0, created_lt 0, created_at 0) from `src` to `dest`, at unix time `now`; ' +
            'the listed transactions are everything it caused, in order, and `after` is the balance and data hash of each ' +
            'Cocoon contract once the step is done. Replaying the steps on another executor must give the same exit codes, ' +
            'gas, fees and states on root/proxy/client/client2/worker. The wallet accounts are sandbox treasury contracts; ' +
            'their transactions are listed for completeness only.',
        generatedBy: 'contracts/scripts/gas-report.mjs --write',
        codeHashes: JSON.parse(fs.readFileSync(path.join(contractsDir, 'build', 'hashes.json'), 'utf8')),
        proxyPublicKey: net.keys.publicKey.toString('hex'),
        startTime: START_TIME,
        accounts,
        // The root's data after the last step (struct version 5, with registry, key-manager and verified
        // keys written by the contract itself): a parser test input for the Rust side.
        rootDataFinal: boc(rootData),
        steps: steps.map((s) => ({
            name: s.name,
            now: s.now,
            message: {
                src: s.fromAddress.toRawString(),
                dest: s.to.toRawString(),
                value: s.value.toString(),
                bounce: true,
                body: boc(s.body),
                init: s.init ? { code: boc(s.init.code), data: boc(s.init.data) } : null,
            },
            transactions: s.txs.map((t) => ({
                account: t.account,
                from: t.from,
                op: t.op === null ? null : hex(t.op),
                bounced: t.bounced,
                success: t.success,
                computeSkipped: t.computeSkipped,
                exitCode: t.exitCode,
                gasUsed: t.gasUsed,
                totalFees: t.totalFees.toString(),
                outMessages: t.out.map((o) => ({ to: o.to, value: o.value.toString(), op: o.op === null ? null : hex(o.op) })),
            })),
            after: Object.fromEntries(Object.entries(s.after).map(([k, v]) => [k, v && { balance: v.balance.toString(), dataHash: v.dataHash }])),
        })),
    };
}

async function main() {
    const write = process.argv.includes('--write');
    const { net, steps } = await measureCycle();
    const failed = steps.flatMap((s) => s.txs.filter((t) => !(t.success || t.computeSkipped)).map((t) => `${s.name}: ${t.account} exit ${t.exitCode}`));
    if (failed.length) throw new Error(`scenario step failed:\n${failed.join('\n')}`);
    const extras = await measureExtras();
    const md = table(cycleRows(steps), extras);
    console.log(md);
    if (!write) return;
    const rootData = (await net.bc.getContract(net.root.address)).accountState.state.data;
    fs.writeFileSync(scenarioFile, JSON.stringify(scenarioJson(net, steps, rootData), null, 1) + '\n');
    const doc = fs.readFileSync(docsFile, 'utf8');
    const start = '<!-- gas-table:start -->';
    const end = '<!-- gas-table:end -->';
    const i = doc.indexOf(start);
    const j = doc.indexOf(end);
    if (i < 0 || j < i) throw new Error(`markers ${start} / ${end} not found in docs/CONTRACTS.md`);
    fs.writeFileSync(docsFile, doc.slice(0, i + start.length) + '\n' + md + '\n' + doc.slice(j));
    console.error(`wrote ${path.relative(process.cwd(), scenarioFile)} and the table in docs/CONTRACTS.md`);
}

main().catch((e) => {
    console.error(e.stack ?? e);
    process.exit(1);
});
