/**
 * Redis Sentinel for real (issue 18): a primary, a replica and three `redis-sentinel`s; two
 * nodes on `redis+sentinel://` (`sixpn up` with the Flycast proxy, and `sixpn control`). The
 * primary is killed under Flycast load: no proxied request fails, API writes resume within
 * 10 s, and a change made after the failover reaches the other node.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { machineAddress, parseHostId } from '../../src/addressing/index.js';
import { startControl, type TestControl } from '../harness/control.js';
import { addLoopbackAddress, IN_NETNS, removeLoopbackAddress } from '../harness/env.js';
import { acmeWebSeedToml, sectionsToml } from '../harness/health-config.js';
import { startMachines, type TestMachine } from '../harness/health-machines.js';
import { sleep, waitFor } from '../harness/net.js';
import { startSentinels, type SentinelSetup } from '../harness/sentinel.js';
import { failed, SteadyLoad } from '../harness/steady-load.js';

const CALLER = 'fdaa:0:18:0:ca11::3';
const FLYCAST = 'fdaa:0:18:0:1::3';
const HOST_ID = parseHostId('a7b:7d')!;
const CATALOG = 'snapshot_interval = "100ms"\nidentity_check_interval = "1s"';

describe.skipIf(!IN_NETNS)('catalog on Redis Sentinel: failover under load', () => {
  let sentinel: SentinelSetup;
  let machines: TestMachine[] = [];
  let a: TestControl;
  let b: TestControl;
  const report: string[] = [];

  beforeAll(async () => {
    sentinel = await startSentinels();
    machines = await startMachines(['c1000001aaaa01', 'c1000002aaaa02'].map((id, i) => ({ id, name: `ams-${i + 1}`, region: 'ams', host: machineAddress(0x18, HOST_ID, id), port: 8080 })));
    addLoopbackAddress(CALLER);
    const seed = [sectionsToml({ dns: { enabled: false } }), acmeWebSeedToml({ machines, flycast: true })].join('\n');
    a = await startControl({ command: 'up', redisUrl: sentinel.url, namespace: 'sen', nodeToml: 'name = "node-a"', catalogToml: CATALOG, extraToml: seed });
    b = await startControl({ redisUrl: sentinel.url, namespace: 'sen', nodeToml: 'name = "node-b"', catalogToml: CATALOG });
  }, 90_000);

  afterAll(async () => {
    for (const n of [a, b]) await n?.stop();
    await Promise.all(machines.map((m) => m.stop()));
    await sentinel?.stop();
    removeLoopbackAddress(CALLER);
    if (report.length) console.log(`sentinel failover figures:\n  ${report.join('\n  ')}`);
  });

  it('kill the primary under load: no proxied request fails, writes resume within 10 s, later changes reach every node', async () => {
    expect(await sentinel.currentPrimaryPort()).toBe(sentinel.primaryPort);
    expect((await b.api('POST', '/v1/apps', { name: 'before', org: 'acme' })).status).toBe(201);
    await waitFor(async () => ((await a.api('GET', '/v1/status')).body.orgs[0].apps as { name: string }[]).some((x) => x.name === 'before'), { what: 'before on a' });

    const load = new SteadyLoad(`http://[${FLYCAST}]:80`, { localAddress: CALLER, concurrency: 4, timeoutMs: 3_000 });
    load.start();
    await waitFor(() => load.samples.length >= 100, { what: '100 requests' });
    const tKill = Date.now();
    await sentinel.primary.stop('SIGKILL');

    // Writes through the API: retried until one goes through (each failure a clear 503).
    let n = 0;
    const codes = new Set<string>();
    for (;;) {
      const r = await b.api('POST', '/v1/apps', { name: `after-${++n}`, org: 'acme' });
      if (r.status === 201) break;
      expect(r.status).toBe(503);
      codes.add(r.body.error.code);
      if (Date.now() - tKill >= 10_000) {
        console.log(r.body.error.message, await sentinel.currentPrimaryPort(), sentinel.replicaPort, b.proc.output().slice(-2000));
      }
      expect(Date.now() - tKill).toBeLessThan(10_000);
      await sleep(100);
    }
    const writesBack = Date.now() - tKill;
    expect(await sentinel.currentPrimaryPort()).toBe(sentinel.replicaPort);
    // A change made after the failover reaches the other node.
    await waitFor(async () => ((await a.api('GET', '/v1/status')).body.orgs[0].apps as { name: string }[]).some((x) => x.name === `after-${n}`), { what: `after-${n} on a`, timeoutMs: 10_000 });
    const viaA = await a.api('POST', '/v1/apps', { name: 'from-a', org: 'acme' });
    expect(viaA.status).toBe(201);
    await waitFor(async () => ((await b.api('GET', '/v1/status')).body.orgs[0].apps as { name: string }[]).some((x) => x.name === 'from-a'), { what: 'from-a on b', timeoutMs: 10_000 });
    for (const node of [a, b]) expect((await node.api('GET', '/v1/status')).body.catalog.state).toBe('ok');
    await sleep(500);
    await load.stop();
    const after = load.between(tKill);
    report.push(`primary killed: API writes back after ${writesBack} ms (${n - 1} refused with ${[...codes].join(', ') || 'nothing'}), ${after.filter(failed).length}/${after.length} proxied requests failed`);
    expect(load.samples.filter(failed)).toEqual([]);
  }, 60_000);
});
