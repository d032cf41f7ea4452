/**
 * Two checker nodes sharing one catalog (a real redis-server): each checks the machines of its
 * own region only, so every machine is checked once, and each verdict is written by the node
 * that checks it and seen by the other through the catalog.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { machineAddress, parseHostId } from '../../src/addressing/index.js';
import { IN_NETNS } from '../harness/env.js';
import { healthNodeToml } from '../harness/health-config.js';
import { startMachines, type TestMachine } from '../harness/health-machines.js';
import { sleep, waitFor } from '../harness/net.js';
import { startSixpn, type Proc } from '../harness/procs.js';
import { startRedis, type TestRedis } from '../harness/redis.js';

const INTERVAL = 250;
const HOST_ID = parseHostId('a7b:7d')!;

/** `[machine id, status]` of each health transition a node logged. */
function logged(p: Proc): [string, string][] {
  return p
    .output()
    .split('\n')
    .filter((l) => l.includes('"module":"health"') && l.includes('"to":'))
    .map((l) => {
      const j = JSON.parse(l) as { machine: string; to: string };
      return [j.machine, j.to];
    });
}

describe.skipIf(!IN_NETNS)('health checks split over two checker nodes by region', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sixpn-health-split-'));
  let redis: TestRedis;
  let machines: TestMachine[] = [];
  const nodes: Proc[] = [];

  const config = (region: string, seed: boolean): string => {
    const toml = healthNodeToml({
      region,
      checkerOnly: true,
      sections: { catalog: { store: 'redis', redis_url: redis.url, namespace: `split-${process.pid}` }, health: { fall: 1, rise: 1 } },
      ...(seed ? { seed: { httpCheck: `{ interval = "${INTERVAL}ms", timeout = "200ms", grace_period = "0s", path = "/health" }`, machines } } : {}),
    });
    const file = join(dir, `${region}.toml`);
    writeFileSync(file, toml);
    return file;
  };

  beforeAll(async () => {
    redis = await startRedis();
    const specs = [
      ...[1, 2, 3].map((i) => ({ id: `a${i}00000${i}cccc`, name: `ewr-${i}`, region: 'ewr' })),
      ...[1, 2].map((i) => ({ id: `b${i}00000${i}dddd`, name: `iad-${i}`, region: 'iad' })),
    ].map((s) => ({ ...s, host: machineAddress(0x18, HOST_ID, s.id), port: 8080 }));
    machines = await startMachines(specs);
    for (const [region, seed] of [['ewr', true], ['iad', false]] as const) {
      // `sixpn up` with every other role disabled: a checker-only node.
      const p = startSixpn(['up', '--config', config(region, seed)], { cwd: dir });
      nodes.push(p);
      await p.waitForLine(/^sixpn ready/, 20_000);
    }
  });

  afterAll(async () => {
    await Promise.all(nodes.map((n) => n.stop()));
    await Promise.all(machines.map((m) => m.stop()));
    await redis?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('each node checks and writes only its own region, once per interval', async () => {
    const [ewrNode, iadNode] = nodes as [Proc, Proc];
    const ids = (region: string): string[] => machines.filter((m) => m.region === region).map((m) => m.id);
    await waitFor(() => ids('ewr').every((id) => logged(ewrNode).some(([m, to]) => m === id && to === 'healthy')), { what: 'ewr machines healthy' });
    await waitFor(() => ids('iad').every((id) => logged(iadNode).some(([m, to]) => m === id && to === 'healthy')), { what: 'iad machines healthy' });
    expect(logged(ewrNode).every(([m]) => ids('ewr').includes(m))).toBe(true);
    expect(logged(iadNode).every(([m]) => ids('iad').includes(m))).toBe(true);
    expect(ewrNode.output()).toMatch(/health: 3 checks on 3 machines in ewr /);
    expect(iadNode.output()).toMatch(/health: 2 checks on 2 machines in iad /);

    // Over 2 s, each machine gets about 2000 / INTERVAL checks: one checker, not two.
    const before = await Promise.all(machines.map((m) => m.checks()));
    await sleep(2_000);
    const after = await Promise.all(machines.map((m) => m.checks()));
    const perMachine = after.map((a, i) => a - before[i]!);
    for (const n of perMachine) {
      expect(n).toBeGreaterThanOrEqual(5);
      expect(n).toBeLessThanOrEqual(10);
    }

    // A failure in iad is seen and written by the iad checker only.
    const victim = machines.find((m) => m.region === 'iad')!;
    await victim.signal('SIGKILL');
    await waitFor(() => logged(iadNode).some(([m, to]) => m === victim.id && to === 'unhealthy'), { what: 'iad checker marks it unhealthy' });
    expect(logged(ewrNode).some(([m]) => m === victim.id)).toBe(false);
  });
});
