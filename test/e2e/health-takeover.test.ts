/**
 * Checker takeover with real processes (issue 18): two checker-only nodes (`sixpn up`) share a
 * real redis-server, one in ams checking ams, one in lhr checking lhr; two real machine
 * processes in ams with a 500 ms HTTP check. The ams node is killed (-9): the lhr node takes
 * its checks within three check intervals; the ams node restarts: the lhr node hands them back,
 * and the machines are soon checked by one node only again.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { machineAddress, parseHostId } from '../../src/addressing/index.js';
import { IN_NETNS } from '../harness/env.js';
import { healthNodeToml } from '../harness/health-config.js';
import { startMachines, type TestMachine } from '../harness/health-machines.js';
import { freePort, sleep, waitFor } from '../harness/net.js';
import { startSixpn, type Proc } from '../harness/procs.js';
import { RedisServer } from '../harness/redis.js';

const INTERVAL = 500;
const HEARTBEAT = 200;
const HOST_ID = parseHostId('a7b:7d')!;

describe.skipIf(!IN_NETNS)('health checker takeover when a checker node dies', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sixpn-takeover-'));
  let redis: RedisServer;
  let machines: TestMachine[] = [];
  const nodes: Record<string, Proc> = {};
  const report: string[] = [];

  const startNode = async (region: string): Promise<Proc> => {
    const file = join(dir, `${region}.toml`);
    writeFileSync(
      file,
      healthNodeToml({
        region,
        checkerOnly: true,
        sections: {
          log: { level: 'info' },
          catalog: { store: 'redis', redis_url: redis.url, namespace: 'takeover', snapshot: join(dir, `${region}-snapshot.json`) },
          health: { node_heartbeat: `${HEARTBEAT}ms` },
        },
        seed: { httpCheck: `{ interval = "${INTERVAL}ms", timeout = "300ms", grace_period = "0s", path = "/health" }`, machines },
      }),
    );
    const p = startSixpn(['up', '--config', file], { cwd: dir });
    await p.waitForLine(/^sixpn ready/, 20_000);
    nodes[region] = p;
    return p;
  };
  /** Checks each machine got during `ms`. */
  const checksDuring = async (ms: number): Promise<number[]> => {
    const before = await Promise.all(machines.map((m) => m.checks()));
    await sleep(ms);
    const after = await Promise.all(machines.map((m) => m.checks()));
    return after.map((n, i) => n - before[i]!);
  };

  beforeAll(async () => {
    redis = await new RedisServer(await freePort()).start();
    machines = await startMachines(['b1000001aaaa01', 'b1000002aaaa02'].map((id, i) => ({ id, name: `ams-${i + 1}`, region: 'ams', host: machineAddress(0x18, HOST_ID, id), port: 8080 })));
    await startNode('ams');
    await startNode('lhr');
  }, 60_000);

  afterAll(async () => {
    for (const p of Object.values(nodes)) await p.stop();
    await Promise.all(machines.map((m) => m.stop()));
    await redis?.stop();
    rmSync(dir, { recursive: true, force: true });
    if (report.length) console.log(`checker takeover figures:\n  ${report.join('\n  ')}`);
  });

  it('takes over within three check intervals, hands back when the checker returns, never two checkers for long', async () => {
    // Steady state: ams checks its machines, once per interval each (lhr does not).
    const steady = await checksDuring(3_000);
    for (const n of steady) expect(n).toBeGreaterThanOrEqual(4), expect(n).toBeLessThanOrEqual(8);
    expect(nodes.lhr!.output()).not.toMatch(/taking over/);

    await nodes.ams!.stop('SIGKILL');
    const tKill = Date.now();
    const base = await Promise.all(machines.map((m) => m.checks()));
    // Every machine is checked again (by lhr) within three intervals of the kill.
    await waitFor(async () => (await Promise.all(machines.map((m) => m.checks()))).every((n, i) => n > base[i]!), { timeoutMs: 3 * INTERVAL + 1_000, everyMs: 20, what: 'checks again after the kill' });
    const resumed = Date.now() - tKill;
    expect(resumed).toBeLessThanOrEqual(3 * INTERVAL);
    expect(nodes.lhr!.output()).toMatch(/taking over the checks of region ams: its checker node-ams is silent/);
    const during = await checksDuring(3_000);
    for (const n of during) expect(n).toBeGreaterThanOrEqual(4), expect(n).toBeLessThanOrEqual(8);

    // The ams node comes back: lhr hands back, and after that one node checks (not two).
    const tBack = Date.now();
    await startNode('ams');
    await waitFor(() => /handing the checks of region ams back/.test(nodes.lhr!.output()), { timeoutMs: 5_000, what: 'hand back' });
    const handedBack = Date.now() - tBack;
    await sleep(INTERVAL);
    const after = await checksDuring(3_000);
    for (const n of after) expect(n).toBeGreaterThanOrEqual(4), expect(n).toBeLessThanOrEqual(8);
    report.push(`kill -9 of the ams checker: checks resumed from lhr in ${resumed} ms (limit ${3 * INTERVAL}); handed back ${handedBack} ms after the restart began; checks per machine per 3 s: steady ${steady.join(',')}, taken over ${during.join(',')}, after hand-back ${after.join(',')}`);
  }, 60_000);
});
