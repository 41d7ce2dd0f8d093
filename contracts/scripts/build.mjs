// Compiles the Cocoon contracts (src/*.tolk) with @ton/tolk-js and writes, per contract, the code cell BOC
// to build/<name>.boc plus build/hashes.json ({name: code hash hex}).
//
//   node scripts/build.mjs            compile into build/
//   node scripts/build.mjs --check    compile into a temp dir and fail if anything differs from build/
//
// The BOCs are committed so that the Rust side (crates/ton, localnet) loads exactly what was tested here;
// CI runs --check so a source change without a rebuild (or a compiler drift) fails loudly.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runTolkCompiler, getTolkCompilerVersion } from '@ton/tolk-js';
import { Cell } from '@ton/core';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const srcDir = path.join(root, 'src');
const buildDir = path.join(root, 'build');

/** Contract name -> entrypoint (relative to src/). The names are the file names under build/. */
export const CONTRACTS = {
    root: 'root.tolk',
    proxy: 'proxy.tolk',
    client: 'client.tolk',
    worker: 'worker.tolk',
};

/** The compiler version the committed BOCs were produced with; a different one is an error, not a drift. */
const EXPECTED_TOLK = '1.4.2';

async function compileOne(name, entry) {
    const result = await runTolkCompiler({
        entrypointFileName: entry,
        fsReadCallback: (p) => fs.readFileSync(path.join(srcDir, p), 'utf8'),
    });
    if (result.status !== 'ok') {
        throw new Error(`compiling ${name} (${entry}) failed:\n${result.message}`);
    }
    if (result.stderr && result.stderr.trim() !== '') {
        process.stderr.write(`[${name}] ${result.stderr}\n`);
    }
    const boc = Buffer.from(result.codeBoc64, 'base64');
    // Re-derive the hash from the BOC itself so hashes.json always describes the bytes we write.
    const hash = Cell.fromBoc(boc)[0].hash().toString('hex');
    if (hash.toUpperCase() !== result.codeHashHex.toUpperCase()) {
        throw new Error(`${name}: compiler hash ${result.codeHashHex} != BOC hash ${hash}`);
    }
    return { boc, hash };
}

export async function compileAll() {
    const version = await getTolkCompilerVersion();
    if (version !== EXPECTED_TOLK) {
        throw new Error(`expected Tolk ${EXPECTED_TOLK}, got ${version} (run npm ci)`);
    }
    const out = {};
    for (const [name, entry] of Object.entries(CONTRACTS)) {
        out[name] = await compileOne(name, entry);
    }
    return out;
}

function writeOutputs(dir, compiled) {
    fs.mkdirSync(dir, { recursive: true });
    const hashes = {};
    for (const [name, { boc, hash }] of Object.entries(compiled)) {
        fs.writeFileSync(path.join(dir, `${name}.boc`), boc);
        hashes[name] = hash;
    }
    fs.writeFileSync(path.join(dir, 'hashes.json'), JSON.stringify(hashes, null, 2) + '\n');
}

function compareOutputs(tmpDir) {
    const problems = [];
    const files = ['hashes.json', ...Object.keys(CONTRACTS).map((n) => `${n}.boc`)];
    for (const f of files) {
        const fresh = path.join(tmpDir, f);
        const committed = path.join(buildDir, f);
        if (!fs.existsSync(committed)) {
            problems.push(`build/${f} is missing`);
            continue;
        }
        if (!fs.readFileSync(fresh).equals(fs.readFileSync(committed))) {
            problems.push(`build/${f} differs from a fresh compile`);
        }
    }
    return problems;
}

async function main() {
    const check = process.argv.includes('--check');
    const compiled = await compileAll();
    if (!check) {
        writeOutputs(buildDir, compiled);
        for (const [name, { boc, hash }] of Object.entries(compiled)) {
            console.log(`${name.padEnd(7)} ${hash}  ${boc.length} bytes`);
        }
        return;
    }
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cocoon-contracts-'));
    try {
        writeOutputs(tmp, compiled);
        const problems = compareOutputs(tmp);
        if (problems.length > 0) {
            console.error('contracts check FAILED: the committed build is not what the sources compile to.');
            for (const p of problems) console.error(`  - ${p}`);
            console.error('Run `npm run build` in contracts/ and commit build/.');
            process.exit(1);
        }
        console.log(`contracts check ok: ${Object.keys(CONTRACTS).length} BOCs and hashes.json match the sources`);
    } finally {
        fs.rmSync(tmp, { recursive: true, force: true });
    }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
    main().catch((e) => {
        console.error(e.message ?? e);
        process.exit(1);
    });
}
