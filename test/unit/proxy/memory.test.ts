import { describe, expect, it } from 'vitest';
import { resolve } from 'node:path';
import { ROOT } from '../../harness/env.js';
import { run } from '../../harness/procs.js';

// Each case runs in a fresh process on the built module (npm test builds first): the young
// generation's size is per process, and V8 must honour a flag set after it started.
const MiB = 2 ** 20;
const MEMORY = resolve(ROOT, 'dist/proxy/memory.js');
const script = (call: string): string =>
  `import(${JSON.stringify(MEMORY)}).then((m) => {
    const v8 = require('node:v8');
    const young = () => v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size;
    ${call}
    // Many objects that survive scavenges, as when thousands of connections open at once.
    const kept = [];
    for (let i = 0; i < 400000; i++) kept.push({ i, s: 'x' + i });
    console.log(JSON.stringify({ after: young(), kept: kept.length }));
  });`;

async function youngSizes(call: string): Promise<{ after: number }> {
  const r = await run(process.execPath, ['-e', script(call)], { timeoutMs: 20_000 });
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as { after: number };
}

describe('holdYoungGeneration', () => {
  it('keeps the young generation at its first size while long-lived objects pile up', async () => {
    // Its first size: two 1 MiB semi-spaces (V8 reports 2 MiB once it has filled them).
    const held = await youngSizes('m.holdYoungGeneration();');
    expect(held.after).toBeLessThanOrEqual(2 * MiB);
  });

  it('lets V8 grow it again when released (and V8 does grow it without the hold)', async () => {
    const released = await youngSizes('m.holdYoungGeneration(); m.holdYoungGeneration(false);');
    expect(released.after).toBeGreaterThan(2 * MiB);
    const untouched = await youngSizes('');
    expect(untouched.after).toBeGreaterThan(2 * MiB);
  });
});
