/**
 * The development option: `[dns] loopback_org` answers loopback askers as members of one org,
 * on 127.0.0.1, for machines without the fdaa::/16 route (what `npm start`'s demo relies on).
 * Needs no namespace: nothing binds a 6PN address.
 */
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dig } from '../harness/dig.js';
import { hasCommand } from '../harness/env.js';
import { freePort } from '../harness/net.js';
import type { Proc } from '../harness/procs.js';
import { startSixpnNode, type SixpnNode } from '../harness/sixpn-node.js';

describe.skipIf(!hasCommand('dig'))('dns: loopback_org development option', () => {
  let sixpn: SixpnNode;
  let node: Proc;
  let port: number;

  beforeAll(async () => {
    port = await freePort();
    sixpn = await startSixpnNode(
      'dns',
      `[catalog]\npath = ""\n[dns]\nport = ${port}\nlisten_6pn = false\nloopback_org = "acme"\n` +
        `[[orgs]]\nname = "acme"\nnetwork_id = 24\n[[orgs]]\nname = "beta"\nnetwork_id = 25\n` +
        `[[apps]]\nname = "web"\norg = "acme"\n[[apps]]\nname = "db"\norg = "beta"\n` +
        `[[machines]]\nid = "aaaaaaaa0001"\napp = "web"\nregion = "ewr"\n`,
    );
    node = sixpn.proc;
  }, 30_000);

  afterAll(async () => {
    await sixpn?.stop();
  });

  it('warns loudly at start and says so in the banner', async () => {
    // The log is written asynchronously: the warning may follow the (synchronous) banner.
    await node.waitForLine(/DEVELOPMENT ONLY: dns.loopback_org/, 5_000);
    expect(node.output()).toMatch(/DEVELOPMENT ONLY: dns.loopback_org/);
    expect(node.output()).toMatch(/dns: \[127\.0\.0\.1\]:\d+ udp\+tcp/);
  });

  it('answers `dig @127.0.0.1 -p PORT _apps.internal TXT` as org acme, and only acme', async () => {
    const apps = await dig('127.0.0.1', port, '_apps.internal', 'TXT');
    expect(apps.status).toBe('NOERROR');
    expect(apps.records.map((r) => r.data)).toEqual(['web']);
    expect((await dig('127.0.0.1', port, 'web.internal', 'AAAA')).records.map((r) => r.data)).toEqual(['fdaa:0:18:a7b:7d:aaaa:aaaa:2']);
    expect((await dig('127.0.0.1', port, 'db.internal', 'AAAA')).status).toBe('NXDOMAIN');
  });

  it('shuts down at once on SIGTERM even with an idle TCP connection open', async () => {
    const idle = connect({ host: '127.0.0.1', port });
    idle.on('error', () => undefined);
    await new Promise((r) => idle.once('connect', r));
    const t0 = Date.now();
    expect(await node.stop('SIGTERM', 8_000)).toBe(0);
    expect(Date.now() - t0).toBeLessThan(3_000);
    idle.destroy();
  });
});
