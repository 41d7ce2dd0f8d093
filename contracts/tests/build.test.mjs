// The committed build artefacts are what the sources compile to, and hashes.json describes them.
// (The same check as `npm run check`, so `npm test` also fails on a stale build.)

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Cell } from '@ton/core';
import { compileAll, CONTRACTS } from '../scripts/build.mjs';
import { BUILD_DIR } from './lib/cocoon.mjs';

test('build/*.boc and build/hashes.json match a fresh compile of src/', async () => {
    const compiled = await compileAll();
    const hashes = JSON.parse(fs.readFileSync(path.join(BUILD_DIR, 'hashes.json'), 'utf8'));
    assert.deepEqual(Object.keys(hashes).sort(), Object.keys(CONTRACTS).sort());
    for (const [name, { boc, hash }] of Object.entries(compiled)) {
        const committed = fs.readFileSync(path.join(BUILD_DIR, `${name}.boc`));
        assert.ok(committed.equals(boc), `build/${name}.boc is stale: run npm run build`);
        assert.equal(hashes[name], hash);
        assert.equal(Cell.fromBoc(committed)[0].hash().toString('hex'), hashes[name]);
    }
});
