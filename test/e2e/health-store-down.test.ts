/**
 * The catalog store goes down while a machine fails: the checker keeps checking, logs the
 * outage once, and writes the transition when a real redis-server is back on the same port
 * (append-only file, so the catalog survives the restart).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { machineAddress, parseHostId } from '../../src/addressing/index.js';
import { RedisStore } from '../../src/catalog/redis.js';
import { IN_NETNS } from '../harness/env.js';
import { healthNodeToml } from '../harness/health-config.js';
import { startMachines, type TestMachine } from '../harness/health-machines.js';
import { freePort, sleep, waitFor } from '../harness/net.js';
import { start, startSixpn, type Proc } from '../harness/procs.js';

const ID = 'c1000001eeee';

describe.skipIf(!IN_NETNS)('health checker while the catalog store is down', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sixpn-health-store-'));
  let port = 0;
  let redis: Proc | null = null;
  let node: Proc;
  let machine: TestMachine;
  const namespace = `storedown-${process.pid}`;

  const startRedisHere = async (): Promise<void> => {
    redis = start('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'yes', '--appendfsync', 'always', '--dir', dir]);
    await redis.waitForLine(/Ready to accept connections/);
  };
  const transitions = (): string[] => node.output().split('\n').filter((l) => l.includes('"module":"health"') && l.includes('"to":'));

  beforeAll(async () => {
    port = await freePort();
    await startRedisHere();
    [machine] = (await startMachines([{ id: ID, name: 'ewr-1', region: 'ewr', host: machineAddress(0x18, parseHostId('a7b:7d')!, ID), port: 8080 }])) as [TestMachine];
    const toml = healthNodeToml({
      region: 'ewr',
      checkerOnly: true,
      sections: { catalog: { store: 'redis', redis_url: `redis://127.0.0.1:${port}`, namespace }, health: { fall: 1, rise: 1 } },
      seed: { httpCheck: '{ interval = "200ms", timeout = "150ms", grace_period = "0s", path = "/health" }', machines: [machine] },
    });
    writeFileSync(join(dir, 'node.toml'), toml);
    node = startSixpn(['up', '--config', join(dir, 'node.toml')], { cwd: dir });
    await node.waitForLine(/^sixpn ready/, 20_000);
  });

  afterAll(async () => {
    await node?.stop();
    await machine?.stop();
    await redis?.stop('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('keeps checking, logs the outage once, writes the transition when the store is back', async () => {
    await waitFor(() => transitions().some((l) => l.includes('"to":"healthy"')), { what: 'healthy' });
    await redis!.stop('SIGKILL');
    await machine.signal('SIGKILL');
    await waitFor(() => transitions().some((l) => l.includes('"to":"unhealthy"')), { what: 'unhealthy decided' });
    await sleep(1_500); // several checks and write retries while the store is down
    expect(node.child.exitCode).toBeNull();
    const outage = node.output().split('\n').filter((l) => l.includes('cannot write health transitions'));
    expect(outage).toHaveLength(1);
    expect(transitions().filter((l) => l.includes('"to":"unhealthy"'))).toHaveLength(1);

    await startRedisHere();
    await node.waitForLine(/catalog store reachable again/, 10_000);
    const store = await RedisStore.open({ url: `redis://127.0.0.1:${port}`, namespace, regions: ['ewr'] });
    try {
      const m = (await store.snapshot()).machines.find((x) => x.id === ID);
      expect(m?.health).toMatchObject({ status: 'unhealthy', reason: 'http connect refused' });
    } finally {
      await store.close();
    }
  });
});
