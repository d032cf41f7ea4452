/**
 * The catalog store contract: every store implementation runs this suite against a real
 * backend. `open()` returns a store on the shared backend; a second call returns a second
 * node's view of the same catalog (for the Redis store, a separate connection).
 */
import { generateKeyPairSync } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { orgOf } from '../../../src/addressing/index.js';
import type { CatalogStore, StoreEvent } from '../../../src/catalog/store.js';
import type { Token } from '../../../src/catalog/types.js';
import { CatalogView } from '../../../src/catalog/view.js';
import { SixpnError } from '../../../src/errors.js';

export interface StoreFactory {
  /** A fresh, empty catalog for one test. */
  fresh(): Promise<void>;
  open(): Promise<CatalogStore>;
  cleanup(): Promise<void>;
}

export function publicKey(): string {
  const { publicKey } = generateKeyPairSync('x25519');
  return (publicKey.export({ format: 'der', type: 'spki' }) as Buffer).subarray(-32).toString('base64');
}

const HOST = { hostId: 0x0a7b007d };
const GW = { gatewayHostId: 0x0a7b0d6b };
const svc = { protocol: 'http' as const, internal_port: 8080, ports: [{ port: 80 }] };

async function rejectsWith(p: Promise<unknown>, code: string): Promise<SixpnError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err, `expected ${code}`).toBeInstanceOf(SixpnError);
  expect((err as SixpnError).code).toBe(code);
  return err as SixpnError;
}

export function storeContract(name: string, factory: StoreFactory): void {
  describe(`catalog store contract: ${name}`, () => {
    let store: CatalogStore;
    const opened: CatalogStore[] = [];
    const open = async () => {
      const s = await factory.open();
      opened.push(s);
      return s;
    };

    beforeEach(async () => {
      await factory.fresh();
      store = await open();
      await store.createOrg({ name: 'acme', network_id: 0x18 });
      await store.createOrg({ name: 'globex', network_id: 0x22b7 });
      await store.createApp({ name: 'web', org: 'acme', services: [svc] });
    });

    afterEach(async () => {
      for (const s of opened.splice(0)) await s.close();
      await factory.cleanup();
    });

    it('creates orgs and refuses duplicate names and network ids', async () => {
      await rejectsWith(store.createOrg({ name: 'acme', network_id: 0x99 }), 'SIXPN_CONFLICT');
      await rejectsWith(store.createOrg({ name: 'other', network_id: 0x18 }), 'SIXPN_CONFLICT');
      await rejectsWith(store.createOrg({ name: 'Bad_Name', network_id: 0x99 }), 'SIXPN_INVALID');
      await rejectsWith(store.createOrg({ name: 'zero', network_id: 0 }), 'SIXPN_INVALID');
      const snap = await store.snapshot();
      expect(snap.orgs.map((o) => o.name).sort()).toEqual(['acme', 'globex']);
    });

    it('creates apps with fly.toml services and refuses bad ones without changing anything', async () => {
      const app = await store.createApp({ name: 'db', org: 'acme', services: [{ protocol: 'tcp', internal_port: 5432, ports: [{ port: 5432 }], concurrency: { type: 'connections', soft_limit: 5, hard_limit: 10 } }] });
      expect(app.services[0]!.concurrency).toEqual({ type: 'connections', soft_limit: 5, hard_limit: 10 });
      await rejectsWith(store.createApp({ name: 'web', org: 'globex' }), 'SIXPN_CONFLICT');
      await rejectsWith(store.createApp({ name: 'x', org: 'nope' }), 'SIXPN_NOT_FOUND');
      await rejectsWith(store.createApp({ name: 'y', org: 'acme', services: [{ internal_port: 0, ports: [] } as never] }), 'SIXPN_INVALID');
      await rejectsWith(
        store.createApp({ name: 'z', org: 'acme', services: [{ internal_port: 80, ports: [{ port: 80 }], concurrency: { type: 'connections', soft_limit: 9, hard_limit: 3 } }] }),
        'SIXPN_INVALID',
      );
      const snap = await store.snapshot();
      expect(snap.apps.map((a) => a.name).sort()).toEqual(['db', 'web']);
    });

    it('registers machines with derived 6PN addresses inside the org prefix', async () => {
      const m = await store.registerMachine({ id: 'f066b83b2c4e71', app: 'web', region: 'ewr' }, HOST);
      expect(m.address).toBe('fdaa:0:18:a7b:7d:f066:b83b:2');
      expect(m.state).toBe('started');
      expect(m.health.status).toBe('unknown');
      const auto = await store.registerMachine({ app: 'web', region: 'lhr' }, HOST);
      expect(auto.id).toMatch(/^[0-9a-f]{14}$/);
      expect(orgOf(auto.address)).toBe(0x18);
    });

    it('refuses machines that would collide or leave the org, changing nothing', async () => {
      await store.registerMachine({ id: 'f066b83b2c4e71', app: 'web', region: 'ewr' }, HOST);
      await rejectsWith(store.registerMachine({ id: 'f066b83b2c4e71', app: 'web', region: 'ewr' }, HOST), 'SIXPN_CONFLICT');
      // same first 8 digits, same host: same address
      await rejectsWith(store.registerMachine({ id: 'f066b83bffffff', app: 'web', region: 'ewr' }, HOST), 'SIXPN_CONFLICT');
      await rejectsWith(store.registerMachine({ app: 'web', region: 'ewr', address: 'fdaa:0:22b7::5:2' }, HOST), 'SIXPN_INVALID');
      await rejectsWith(store.registerMachine({ app: 'web', region: 'ewr', address: 'fdaa:0:18::3' }, HOST), 'SIXPN_INVALID');
      await rejectsWith(store.registerMachine({ app: 'web', region: 'ewr', address: 'not-an-ip' }, HOST), 'SIXPN_INVALID');
      await rejectsWith(store.registerMachine({ app: 'web', region: 'zzz' }, HOST), 'SIXPN_INVALID');
      await rejectsWith(store.registerMachine({ app: 'nope', region: 'ewr' }, HOST), 'SIXPN_NOT_FOUND');
      expect((await store.snapshot()).machines).toHaveLength(1);
    });

    it('updates state and health, and removes machines', async () => {
      const m = await store.registerMachine({ app: 'web', region: 'ewr' }, HOST);
      const stopped = await store.updateMachine(m.id, { state: 'stopped' });
      expect(stopped.state).toBe('stopped');
      const sick = await store.updateMachine(m.id, { health: { status: 'unhealthy', reason: 'connect refused' } });
      expect(sick.health.status).toBe('unhealthy');
      expect(sick.health.reason).toBe('connect refused');
      expect(sick.state).toBe('stopped');
      await rejectsWith(store.updateMachine(m.id, { state: 'paused' as never }), 'SIXPN_INVALID');
      await rejectsWith(store.updateMachine('0000000000', { state: 'started' }), 'SIXPN_NOT_FOUND');
      await store.removeMachine(m.id);
      await rejectsWith(store.removeMachine(m.id), 'SIXPN_NOT_FOUND');
      expect((await store.snapshot()).machines).toHaveLength(0);
    });

    const HOSTS = { reservedHostIds: [0x0a7b007d, 0x0a7b0d6b], staleAfterMs: 6_000 };
    const cfg = { cmd: ['/bin/sleep', '60'] };

    it('registers hosts: configured or allocated host ids, unique, kept across restarts', async () => {
      const a = await store.registerHost({ name: 'ewr-1', region: 'ewr', host_id: 0x0b000001, driver: 'netns', session: 'boot/1' }, HOSTS);
      expect(a).toMatchObject({ name: 'ewr-1', region: 'ewr', host_id: 0x0b000001, state: 'up', driver: 'netns', session: 'boot/1' });
      const b = await store.registerHost({ name: 'iad-1', region: 'iad', driver: 'netns', session: 'boot/2' }, HOSTS);
      expect(b.host_id).toBeGreaterThan(1);
      expect(b.host_id).not.toBe(a.host_id);
      expect(HOSTS.reservedHostIds).not.toContain(b.host_id);
      // a host id clash: changes nothing
      await rejectsWith(store.registerHost({ name: 'lhr-1', region: 'lhr', host_id: 0x0b000001, driver: 'netns', session: 'boot/3' }, HOSTS), 'SIXPN_CONFLICT');
      await rejectsWith(store.registerHost({ name: 'lhr-1', region: 'lhr', host_id: 0x0a7b0d6b, driver: 'netns', session: 'boot/3' }, HOSTS), 'SIXPN_CONFLICT');
      await rejectsWith(store.registerHost({ name: 'lhr-1', region: 'zzz', driver: 'netns', session: 'boot/3' }, HOSTS), 'SIXPN_INVALID');
      await rejectsWith(store.registerHost({ name: 'lhr-1', region: 'lhr', host_id: 1, driver: 'netns', session: 'boot/3' }, HOSTS), 'SIXPN_INVALID');
      // the same agent again (same session) keeps its id; another id for a known name is refused
      expect((await store.registerHost({ name: 'iad-1', region: 'iad', driver: 'netns', session: 'boot/2' }, HOSTS)).host_id).toBe(b.host_id);
      await rejectsWith(store.registerHost({ name: 'iad-1', region: 'iad', host_id: 0x0b000009, driver: 'netns', session: 'boot/2' }, HOSTS), 'SIXPN_CONFLICT');
      expect((await store.snapshot()).hosts.map((h) => h.name)).toEqual(['ewr-1', 'iad-1']);
    });

    it('refuses a second agent under a live host name, but lets one take over a gone one', async () => {
      await store.registerHost({ name: 'ewr-1', region: 'ewr', driver: 'netns', session: 'boot/1' }, HOSTS);
      await rejectsWith(store.registerHost({ name: 'ewr-1', region: 'ewr', driver: 'netns', session: 'boot/9' }, HOSTS), 'SIXPN_CONFLICT');
      const taken = await store.registerHost({ name: 'ewr-1', region: 'ewr', driver: 'netns', session: 'boot/9' }, { ...HOSTS, replaceSession: 'boot/1' });
      expect(taken.session).toBe('boot/9');
      // the replaced agent's heartbeats are refused from now on
      await rejectsWith(store.updateHost('ewr-1', { heartbeat_at: Date.now() }, { ifSession: 'boot/1' }), 'SIXPN_CONFLICT');
      const beat = await store.updateHost('ewr-1', { heartbeat_at: taken.heartbeat_at + 5 }, { ifSession: 'boot/9' });
      expect(beat.heartbeat_at).toBe(taken.heartbeat_at + 5);
      const down = await store.updateHost('ewr-1', { state: 'down' });
      expect(down.state).toBe('down');
      // a host shut down cleanly can be taken by any session at once
      expect((await store.registerHost({ name: 'ewr-1', region: 'ewr', driver: 'netns', session: 'boot/10' }, HOSTS)).state).toBe('up');
      await rejectsWith(store.updateHost('nope', { state: 'down' }), 'SIXPN_NOT_FOUND');
    });

    it('places run machines on their host: address from its host id, config kept, state created', async () => {
      const h = await store.registerHost({ name: 'ewr-1', region: 'ewr', host_id: 0x0b000001, driver: 'netns', session: 's' }, HOSTS);
      const m = await store.registerMachine({ id: 'c0ffee0012345678', app: 'web', region: 'ewr', host: 'ewr-1', config: { ...cfg, env: { A: '1' }, kill_timeout: '2s' } }, HOST);
      expect(m.address).toBe('fdaa:0:18:b00:1:c0ff:ee00:2');
      expect(m.state).toBe('created');
      expect(m.host).toBe(h.name);
      expect(m.config).toEqual({ cmd: ['/bin/sleep', '60'], env: { A: '1' }, restart: { policy: 'always', max_retries: 10 }, kill_signal: 'SIGINT', kill_timeout: 2000 });
      // bad input changes nothing
      await rejectsWith(store.registerMachine({ app: 'web', region: 'ewr', host: 'nope', config: cfg }, HOST), 'SIXPN_NOT_FOUND');
      await rejectsWith(store.registerMachine({ app: 'web', region: 'iad', host: 'ewr-1', config: cfg }, HOST), 'SIXPN_INVALID');
      await rejectsWith(store.registerMachine({ app: 'web', region: 'ewr', host: 'ewr-1' }, HOST), 'SIXPN_INVALID');
      await rejectsWith(store.registerMachine({ app: 'web', region: 'ewr', host: 'ewr-1', config: { cmd: ['x'], env: { 'BAD-KEY': '1' } } }, HOST), 'SIXPN_INVALID');
      await rejectsWith(store.registerMachine({ app: 'web', region: 'ewr', host: 'ewr-1', config: { cmd: ['x'], env: { FLY_REGION: 'x' } } }, HOST), 'SIXPN_INVALID');
      await rejectsWith(store.registerMachine({ app: 'web', region: 'ewr', host: 'ewr-1', config: { cmd: [] } }, HOST), 'SIXPN_INVALID');
      await rejectsWith(store.registerMachine({ app: 'web', region: 'ewr', host: 'ewr-1', config: { cmd: ['x'], kill_signal: 'SIGHUP' as never } }, HOST), 'SIXPN_INVALID');
      await rejectsWith(store.registerMachine({ app: 'web', region: 'ewr', state: 'starting' }, HOST), 'SIXPN_INVALID');
      expect((await store.snapshot()).machines.map((x) => x.id)).toEqual([m.id]);
      // a host with machines is not removed; without, it is
      await rejectsWith(store.removeHost('ewr-1'), 'SIXPN_CONFLICT');
      await rejectsWith(store.registerHost({ name: 'ewr-1', region: 'iad', driver: 'netns', session: 's' }, HOSTS), 'SIXPN_CONFLICT');
      await store.removeMachine(m.id);
      await store.removeHost('ewr-1');
      await rejectsWith(store.removeHost('ewr-1'), 'SIXPN_NOT_FOUND');
      expect((await store.snapshot()).hosts).toHaveLength(0);
    });

    it('moves a run machine through its states with compare-and-set, recording exits', async () => {
      await store.registerHost({ name: 'ewr-1', region: 'ewr', driver: 'netns', session: 's' }, HOSTS);
      const m = await store.registerMachine({ app: 'web', region: 'ewr', host: 'ewr-1', config: cfg }, HOST);
      await store.updateMachine(m.id, { state: 'starting' }, { ifState: ['created', 'stopped'] });
      const up = await store.updateMachine(m.id, { state: 'started', state_reason: 'running' }, { ifState: ['starting'] });
      expect(up.state).toBe('started');
      // only one of two racing "started -> stopping" wins
      const both = await Promise.allSettled([
        store.updateMachine(m.id, { state: 'stopping' }, { ifState: ['started'] }),
        store.updateMachine(m.id, { state: 'stopping' }, { ifState: ['started'] }),
      ]);
      expect(both.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      expect((both.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason.code).toBe('SIXPN_CONFLICT');
      const exit = { exit_code: null, signal: 'SIGINT', requested: true, at: Date.now() };
      const stopped = await store.updateMachine(m.id, { state: 'stopped', last_exit: exit, restarts: 0, state_reason: null });
      expect(stopped).toMatchObject({ state: 'stopped', last_exit: exit, restarts: 0 });
      expect(stopped.state_reason).toBeUndefined();
      await rejectsWith(store.updateMachine(m.id, { state: 'destroyed' }), 'SIXPN_INVALID');
      await rejectsWith(store.updateMachine(m.id, { state: 'started' }, { ifState: ['starting'] }), 'SIXPN_CONFLICT');
      expect((await store.snapshot()).machines[0]!.state).toBe('stopped');
    });

    it('keeps autostop settings and primary_region; suspends and resumes with compare-and-set; one of two nodes wins stopped -> starting', async () => {
      const app = await store.createApp({
        name: 'nap',
        org: 'acme',
        primary_region: 'ewr',
        services: [{ ...svc, auto_stop_machines: 'suspend', auto_start_machines: true, min_machines_running: 1 }],
      });
      expect(app.primary_region).toBe('ewr');
      expect(app.services[0]).toMatchObject({ auto_stop_machines: 'suspend', auto_start_machines: true, min_machines_running: 1 });
      // fly.toml's older booleans mean "stop" and "off"
      const legacy = await store.updateAppServices('nap', [{ ...svc, auto_stop_machines: true as never }], { primary_region: 'iad' });
      expect(legacy.services[0]!.auto_stop_machines).toBe('stop');
      expect(legacy.primary_region).toBe('iad');
      expect((await store.updateAppServices('nap', [svc])).primary_region).toBe('iad');
      expect((await store.updateAppServices('nap', [svc], { primary_region: null })).primary_region).toBeUndefined();
      await rejectsWith(store.updateAppServices('nap', [svc], { primary_region: 'zzz' }), 'SIXPN_INVALID');
      await rejectsWith(store.updateAppServices('nap', [{ ...svc, auto_stop_machines: 'sleep' as never }]), 'SIXPN_INVALID');
      await rejectsWith(store.updateAppServices('nap', [{ ...svc, min_machines_running: -1 }]), 'SIXPN_INVALID');
      await rejectsWith(store.createApp({ name: 'far', org: 'acme', primary_region: 'zzz' }), 'SIXPN_INVALID');
      expect((await store.snapshot()).apps.find((a) => a.name === 'nap')!.services[0]!.auto_stop_machines).toBeUndefined();

      await store.registerHost({ name: 'ewr-1', region: 'ewr', driver: 'netns', session: 's' }, HOSTS);
      const m = await store.registerMachine({ app: 'nap', region: 'ewr', host: 'ewr-1', config: cfg }, HOST);
      await store.updateMachine(m.id, { state: 'started' });
      const seen = Date.now();
      expect((await store.updateMachine(m.id, { last_active_at: seen })).last_active_at).toBe(seen);
      await store.updateMachine(m.id, { state: 'suspending' }, { ifState: ['started'] });
      expect((await store.updateMachine(m.id, { state: 'suspended' }, { ifState: ['suspending'] })).state).toBe('suspended');
      await rejectsWith(store.updateMachine(m.id, { last_active_at: -1 }), 'SIXPN_INVALID');
      // two nodes wake the same machine at once: exactly one compare-and-set wins
      const other = await open();
      const race = await Promise.allSettled([
        store.updateMachine(m.id, { state: 'starting', state_reason: 'node a' }, { ifState: ['stopped', 'suspended'] }),
        other.updateMachine(m.id, { state: 'starting', state_reason: 'node b' }, { ifState: ['stopped', 'suspended'] }),
      ]);
      expect(race.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      expect((race.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason.code).toBe('SIXPN_CONFLICT');
      const after = (await other.snapshot()).machines.find((x) => x.id === m.id)!;
      expect(after.state).toBe('starting');
      expect(after.last_active_at).toBe(seen);
    });

    it('allocates Flycast addresses in order, never reusing one', async () => {
      const a = await store.allocateFlycast('web');
      const b = await store.allocateFlycast('web');
      expect(a.address).toBe('fdaa:0:18:0:1::3');
      expect(b.address).toBe('fdaa:0:18:0:1::4');
      expect(a.org).toBe('acme');
      await store.releaseFlycast(b.address);
      const c = await store.allocateFlycast('web');
      expect(c.address).toBe('fdaa:0:18:0:1::5');
      const cross = await store.allocateFlycast('web', 'globex');
      expect(cross.address).toBe('fdaa:0:22b7:0:1::3');
      expect(cross.org).toBe('globex');
    });

    it('refuses to release an address of another org or an unknown one', async () => {
      const a = await store.allocateFlycast('web');
      await rejectsWith(store.releaseFlycast(a.address, 'globex'), 'SIXPN_FORBIDDEN');
      await rejectsWith(store.releaseFlycast('fdaa:0:18:0:1::99'), 'SIXPN_NOT_FOUND');
      await rejectsWith(store.releaseFlycast('bogus'), 'SIXPN_INVALID');
      await rejectsWith(store.allocateFlycast('nope'), 'SIXPN_NOT_FOUND');
      expect((await store.snapshot()).flycast.map((f) => f.address)).toEqual([a.address]);
    });

    it('creates peers with /120 addresses and unique names per org', async () => {
      const p = await store.createPeer({ name: 'laptop', org: 'acme', region: 'ewr', public_key: publicKey() }, GW);
      expect(p.address).toBe('fdaa:0:18:a7b:d6b:0:1:2');
      const q = await store.createPeer({ name: 'laptop', org: 'globex', region: 'ewr', public_key: publicKey() }, GW);
      expect(orgOf(q.address)).toBe(0x22b7);
      await rejectsWith(store.createPeer({ name: 'laptop', org: 'acme', region: 'ewr', public_key: publicKey() }, GW), 'SIXPN_CONFLICT');
      await rejectsWith(store.createPeer({ name: 'a-name-that-is-too-long', org: 'acme', region: 'ewr', public_key: publicKey() }, GW), 'SIXPN_INVALID');
      await rejectsWith(store.createPeer({ name: 'k', org: 'acme', region: 'ewr', public_key: 'not-a-key' }, GW), 'SIXPN_INVALID');
      expect(JSON.stringify(await store.snapshot())).not.toMatch(/private/i);
      await store.removePeer('acme', 'laptop');
      await rejectsWith(store.removePeer('acme', 'laptop'), 'SIXPN_NOT_FOUND');
      expect((await store.snapshot()).peers.map((x) => x.org)).toEqual(['globex']);
    });

    it('deletes an app with its machines and addresses; refuses to delete a used org', async () => {
      await store.registerMachine({ app: 'web', region: 'ewr' }, HOST);
      await store.allocateFlycast('web');
      await rejectsWith(store.deleteOrg('acme'), 'SIXPN_CONFLICT');
      await store.deleteApp('web');
      const snap = await store.snapshot();
      expect(snap.apps).toHaveLength(0);
      expect(snap.machines).toHaveLength(0);
      expect(snap.flycast).toHaveLength(0);
      await store.deleteOrg('acme');
      expect((await store.snapshot()).orgs.map((o) => o.name)).toEqual(['globex']);
    });

    it('stores tokens by id (the hash of the secret only), shares them with other nodes, revokes them', async () => {
      const now = Date.now();
      const hash = 'ab'.repeat(32);
      const tok = (id: string, extra: Partial<Token> = {}): Token => ({ id, kind: 'org', name: 'ci deploy', orgs: ['acme'], hash, created_at: now, expires_at: now + 60_000, ...extra });
      const events: StoreEvent[] = [];
      store.subscribe((e) => events.push(e));
      const a = await store.createToken(tok('00000000000000a1'));
      expect(a).toEqual(tok('00000000000000a1'));
      await rejectsWith(store.createToken(tok('00000000000000a1')), 'SIXPN_CONFLICT');
      await rejectsWith(store.createToken(tok('00000000000000a2', { orgs: ['nope'] })), 'SIXPN_NOT_FOUND');
      await rejectsWith(store.createToken(tok('00000000000000a3', { orgs: [] })), 'SIXPN_INVALID');
      await rejectsWith(store.createToken(tok('00000000000000a4', { orgs: ['acme', 'acme'] })), 'SIXPN_INVALID');
      await rejectsWith(store.createToken(tok('00000000000000a5', { expires_at: now - 1 })), 'SIXPN_INVALID');
      await rejectsWith(store.createToken(tok('not-an-id')), 'SIXPN_INVALID');
      await rejectsWith(store.createToken(tok('00000000000000a6', { hash: 'secret' })), 'SIXPN_INVALID');
      const both = await store.createToken(tok('00000000000000b1', { orgs: ['acme', 'globex'], created_at: now + 1 }));
      const session = await store.createToken(tok('00000000000000c1', { kind: 'dashboard', orgs: [], created_at: now + 2 }));
      expect((await store.listTokens()).map((t) => t.id)).toEqual([a.id, both.id, session.id]);
      // Tokens are not catalog data: no snapshot, no change event carries them.
      expect(JSON.stringify(await store.snapshot())).not.toContain(hash);
      expect(events).toEqual([]);
      const other = await open();
      expect(await other.getToken(both.id)).toEqual(both);
      await other.revokeToken(a.id);
      expect(await store.getToken(a.id)).toBeUndefined();
      await rejectsWith(store.revokeToken(a.id), 'SIXPN_NOT_FOUND');
      expect(await store.revokeTokens('dashboard')).toBe(1);
      expect(await store.getToken(session.id)).toBeUndefined();
      // A deleted org takes its tokens along, so a new org of the same name is not open to them.
      await store.deleteApp('web');
      await store.deleteOrg('acme');
      expect(await store.getToken(both.id)).toBeUndefined();
    });

    it('removes expired tokens when it writes a new one, and never lists them', async () => {
      const now = Date.now();
      const base = { kind: 'org' as const, name: 'short', orgs: ['acme'], hash: 'cd'.repeat(32), created_at: now };
      await store.createToken({ ...base, id: '00000000000000d1', expires_at: now + 150 });
      expect((await store.listTokens()).map((t) => t.id)).toEqual(['00000000000000d1']);
      await new Promise((r) => setTimeout(r, 200));
      expect(await store.listTokens()).toEqual([]);
      await store.createToken({ ...base, id: '00000000000000d2', expires_at: Date.now() + 60_000 });
      expect(await store.getToken('00000000000000d1')).toBeUndefined();
    });

    it('publishes every change to subscribers on other nodes within 1 s', async () => {
      const other = await open();
      const seen: StoreEvent[] = [];
      other.subscribe((e) => seen.push(e));
      const t0 = Date.now();
      const m = await store.registerMachine({ app: 'web', region: 'ewr' }, HOST);
      await store.updateMachine(m.id, { state: 'stopped' });
      const deadline = Date.now() + 1000;
      while (seen.filter((e) => e.kind === 'machine').length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      const machineEvents = seen.filter((e) => e.kind === 'machine');
      expect(machineEvents).toHaveLength(2);
      expect(Date.now() - t0).toBeLessThan(1000);
      const last = machineEvents[1]!;
      expect(last.kind === 'machine' && last.op === 'put' && last.value.state).toBe('stopped');
    });

    it('keeps a CatalogView on another node in step with changes', async () => {
      const view = await CatalogView.open(await open());
      const m = await store.registerMachine({ app: 'web', region: 'ewr' }, HOST);
      const ip = await store.allocateFlycast('web');
      const deadline = Date.now() + 1000;
      while ((!view.machines.has(m.id) || !view.flycast.has(ip.address)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      expect(view.machines.get(m.id)?.address).toBe(m.address);
      expect(view.flycast.get(ip.address)?.app).toBe('web');
      expect([...view.machinesOf('web')].map((x) => x.id)).toEqual([m.id]);
      expect(view.orgByNetworkId(0x18)?.name).toBe('acme');
      await store.registerHost({ name: 'ewr-1', region: 'ewr', driver: 'local', session: 's' }, { reservedHostIds: [], staleAfterMs: 1000 });
      const run = await store.registerMachine({ app: 'web', region: 'ewr', host: 'ewr-1', config: { cmd: ['true'] } }, HOST);
      while ((!view.hosts.has('ewr-1') || !view.machines.has(run.id)) && Date.now() < deadline + 1000) await new Promise((r) => setTimeout(r, 5));
      expect([...view.machinesOnHost('ewr-1')].map((x) => x.id)).toEqual([run.id]);
      await store.removeMachine(run.id);
      await store.removeHost('ewr-1');
      await store.removeMachine(m.id);
      while ((view.machines.has(m.id) || view.hosts.size) && Date.now() < deadline + 2000) await new Promise((r) => setTimeout(r, 5));
      expect([...view.machinesOf('web')]).toHaveLength(0);
      expect([...view.machinesOnHost('ewr-1')]).toHaveLength(0);
      expect(view.hosts.size).toBe(0);
      view.close();
    });
  });
}
