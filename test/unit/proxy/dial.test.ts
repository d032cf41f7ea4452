import net from 'node:net';
import { readFileSync } from 'node:fs';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { Balancer, type Slot } from '../../../src/balancer/index.js';
import type { Machine, Service } from '../../../src/catalog/types.js';
import { proxyConfigSchema } from '../../../src/proxy/config.js';
import { BAD_UPSTREAM, isConnectError } from '../../../src/proxy/core.js';
import { Deadlines } from '../../../src/proxy/http1/deadlines.js';
import { Upstream } from '../../../src/proxy/upstream.js';
import { parseRegionsCsv, RegionTable } from '../../../src/regions/index.js';

const table = new RegionTable(parseRegionsCsv(readFileSync(new URL('../../../config/regions.csv', import.meta.url), 'utf8')));

// Entries stored before the API checked upstreams (or written by hand) may still reach a dial:
// whatever they hold must come back as a connect failure, never as an exception.
describe('dialing a machine whose upstream no socket can use', () => {
  it.each(['127.0.0.1:99999', '127.0.0.1:-1', '127.0.0.1:abc', 'no-port', '[::1]:70000'])('%s is a connect failure', async (upstream) => {
    const balancer = new Balancer({ region: 'ewr', regions: table, slowStartMs: 0, passive: { consecutiveFailures: 3, baseEjectionMs: 1000, maxEjectionMs: 10_000, maxEjectionPercent: 50 } });
    const wheel = new Deadlines(10);
    const core = new Upstream(proxyConfigSchema.parse({ connect_timeout: 500 }), balancer, pino({ level: 'silent' }), wheel);
    const machine = { id: 'aaaa0001', app: 'web', region: 'ewr', address: 'fdaa:0:18:a7b:7d:aaaa:1:2', upstream } as Machine;
    const got = await core.dial({ machine } as Slot, { internal_port: 8080 } as Service);
    wheel.close();
    expect(got).toBeInstanceOf(Error);
    expect(isConnectError(got)).toBe(true);
    if ((got as NodeJS.ErrnoException).code === BAD_UPSTREAM) expect((got as Error).message).toContain('machine aaaa0001: cannot dial');
  });
});

describe('upstream layer seams', () => {
  const passive = { consecutiveFailures: 3, baseEjectionMs: 1000, maxEjectionMs: 10_000, maxEjectionPercent: 50 };
  const started = (id: string, port: number): Machine =>
    ({ id, app: 'web', region: 'ewr', address: 'fdaa:0:18:a7b:7d:aaaa:1:2', upstream: `127.0.0.1:${port}`, state: 'started', health: { status: 'healthy', reason: '', changed_at: 0 }, created_at: 0, updated_at: 0 }) as Machine;

  it('sourceFor: every connect to a machine is made from the address it names (the mesh)', async () => {
    const seen: string[] = [];
    const server = net.createServer((s) => {
      seen.push(s.remoteAddress ?? '');
      s.destroy();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as net.AddressInfo).port;
    const balancer = new Balancer({ region: 'ewr', regions: table, slowStartMs: 0, passive });
    const wheel = new Deadlines(10);
    const up = new Upstream(proxyConfigSchema.parse({}), balancer, pino({ level: 'silent' }), wheel, (m) => (m.id === 'aaaa0001' ? '127.0.0.2' : undefined));
    const service = { internal_port: 8080, concurrency: { soft_limit: 5, hard_limit: 5 } } as Service;
    balancer.upsert(started('aaaa0001', port));
    const got = await up.connect<net.Socket>({ app: 'web', service, tried: new Set(), gone: () => false, adopt: (_s, sock) => sock, reportConnect: true });
    expect(got).not.toBeInstanceOf(Error);
    const sock = (got as { conn: net.Socket }).conn;
    expect(sock.localAddress).toBe('127.0.0.2');
    sock.destroy();
    await new Promise((r) => setTimeout(r, 50));
    expect(seen).toEqual(['127.0.0.2']);
    up.release((got as { m: Slot }).m);
    wheel.close();
    server.close();
  });

  it('autostart: a caller that finds no machine waits for the one woken, and is then served by it', async () => {
    const server = net.createServer((s) => s.destroy());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as net.AddressInfo).port;
    const balancer = new Balancer({ region: 'ewr', regions: table, slowStartMs: 0, passive });
    const wheel = new Deadlines(10);
    const up = new Upstream(proxyConfigSchema.parse({}), balancer, pino({ level: 'silent' }), wheel);
    const calls: string[] = [];
    up.autostart = {
      async wake(app) {
        calls.push(`wake ${app}`);
        await new Promise((r) => setTimeout(r, 30));
        const m = started('aaaa0002', port);
        balancer.upsert(m);
        return m;
      },
      nudge(app, _service, rank) {
        calls.push(`nudge ${app} ${rank}`);
      },
    };
    const service = { internal_port: 8080, concurrency: { soft_limit: 1, hard_limit: 2 } } as Service;
    const first = await up.connect<net.Socket>({ app: 'web', service, tried: new Set(), gone: () => false, adopt: (_s, sock) => sock, reportConnect: true });
    expect((first as { m: Slot }).m.machine.id).toBe('aaaa0002');
    // Over soft_limit now: the next pick is served but asks for another machine for later callers.
    const second = await up.connect<net.Socket>({ app: 'web', service, tried: new Set(), gone: () => false, adopt: (_s, sock) => sock, reportConnect: true });
    expect((second as { m: Slot }).m.machine.id).toBe('aaaa0002');
    expect(calls).toEqual(['wake web', `nudge web ${Infinity}`]);
    for (const r of [first, second] as { m: Slot; conn: net.Socket }[]) {
      r.conn.destroy();
      up.release(r.m);
    }
    wheel.close();
    server.close();
  });
});
