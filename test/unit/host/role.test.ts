// The host role with the local driver, in-process, on a real embedded store and real processes:
// registration, run, crash and restart policy, stop with kill_timeout, destroy, agent restart
// (machines adopted, none started twice), leftovers, and start-up refusals that change nothing.
import { statSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatHostId, parseHostId } from '../../../src/addressing/index.js';
import type { Machine, MachineConfigInput } from '../../../src/catalog/types.js';
import { loadConfig } from '../../../src/config/index.js';
import { publicKeyOf } from '../../../src/gateway/keys.js';
import { startHostRole, type HostRole } from '../../../src/host/index.js';
import { MachineProcess } from '../../../src/host/process.js';
import { startNode, type RunningNode } from '../../../src/node.js';
import { waitFor } from '../../harness/net.js';

const SERVER = `require('http').createServer((q,s)=>s.end(process.env.FLY_MACHINE_ID+' '+process.env.FLY_REGION+' '+process.env.GREETING)).listen(process.env.PORT,'127.0.0.1',()=>console.log('listening'))`;

let dir: string;
const nodes: RunningNode[] = [];
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'sixpn-hostrole-'));
});
afterAll(async () => {
  for (const n of nodes.splice(0)) await n.stop();
  // Anything a test left running goes with its folder.
  rmSync(dir, { recursive: true, force: true });
});

async function startHost(name: string, extra = '', file = `${name}.toml`): Promise<RunningNode> {
  const path = join(dir, file);
  writeFileSync(
    path,
    [
      '[node]',
      `name = "${name}"`,
      'region = "ewr"',
      '[catalog]',
      `path = "${name}-catalog.json"`,
      '[log]',
      'level = "silent"',
      '[host]',
      'enabled = true',
      'driver = "local"',
      `state_dir = "${name}-state"`,
      'restart_backoff = "100ms"',
      ...(extra.includes('heartbeat_interval') ? [] : ['heartbeat_interval = "200ms"']),
      'heartbeat_timeout = "1s"',
      'resync_interval = "500ms"',
      extra,
      '[[orgs]]',
      'name = "acme"',
      'network_id = 24',
      '[[apps]]',
      'name = "web"',
      'org = "acme"',
    ].join('\n'),
  );
  const node = await startNode(loadConfig(path), ['host'], { host: startHostRole });
  nodes.push(node);
  return node;
}

async function stopNode(n: RunningNode): Promise<void> {
  await n.stop();
  nodes.splice(nodes.indexOf(n), 1);
}

const machineOf = (n: RunningNode, id: string): Machine | undefined => n.ctx.view.machines.get(id);
const waitState = (n: RunningNode, id: string, state: string, timeoutMs = 10_000) =>
  waitFor(() => machineOf(n, id)?.state === state && machineOf(n, id), { timeoutMs, what: `machine ${id} ${state} (is ${machineOf(n, id)?.state}: ${machineOf(n, id)?.state_reason})` });

async function run(n: RunningNode, id: string, config: MachineConfigInput): Promise<Machine> {
  await n.ctx.store.registerMachine({ id, app: 'web', region: 'ewr', host: n.ctx.config.node.name, config }, { hostId: 0 });
  return waitState(n, id, 'started');
}

const get = async (upstream: string) => (await (await request(`http://${upstream}/`)).body.text());
const pidOf = (n: RunningNode, id: string) => Number(readFileSync(join(n.ctx.config.host.state_dir, 'machines', id, 'pid'), 'utf8'));

describe('host role (local driver)', () => {
  it('registers with an allocated host id, its WireGuard public key and a 0600 private key', async () => {
    const n = await startHost('h1');
    const host = n.ctx.view.hosts.get('h1')!;
    expect(host).toMatchObject({ name: 'h1', region: 'ewr', state: 'up', driver: 'local' });
    expect([0, 1, parseHostId('a7b:7d'), parseHostId('a7b:d6b')]).not.toContain(host.host_id);
    const keyFile = join(n.ctx.config.host.state_dir, 'wireguard.json');
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    const keys = JSON.parse(readFileSync(keyFile, 'utf8')) as { private_key: string };
    expect(host.wireguard?.public_key).toBe(publicKeyOf(keys.private_key));
    expect(JSON.stringify(await n.ctx.store.snapshot())).not.toContain(keys.private_key);
    expect(readFileSync(join(n.ctx.config.host.state_dir, 'host-id'), 'utf8').trim()).toBe(formatHostId(host.host_id));
    // heartbeats move
    const t = host.heartbeat_at;
    await waitFor(() => n.ctx.view.hosts.get('h1')!.heartbeat_at > t, { what: 'a heartbeat' });
    expect((n.roles[0] as HostRole).describe!()[0]).toMatch(/^host: h1 in ewr, host id [0-9a-f]+:[0-9a-f]+, driver local/);
    await stopNode(n);
  });

  it('runs a machine on PORT with the Fly env, restarts it after kill -9, stops and destroys it', async () => {
    const n = await startHost('h2');
    const m = await run(n, 'c1000000000001', { cmd: ['node', '-e', SERVER], env: { GREETING: 'hi' } });
    expect(m.upstream).toMatch(/^127\.0\.0\.1:\d+$/);
    await waitFor(async () => (await get(m.upstream!).catch(() => '')) === 'c1000000000001 ewr hi', { what: 'the machine answers' });
    const pid = pidOf(n, m.id);
    process.kill(pid, 'SIGKILL');
    const restarting = await waitFor(() => (machineOf(n, m.id)?.restarts ?? 0) >= 1 && machineOf(n, m.id), { what: 'the restart recorded' });
    expect(restarting.last_exit).toMatchObject({ exit_code: null, signal: 'SIGKILL', requested: false });
    const again = await waitState(n, m.id, 'started');
    expect(pidOf(n, m.id)).not.toBe(pid);
    expect(again.upstream).toBe(m.upstream); // the same port while it is free
    await waitFor(async () => (await get(m.upstream!).catch(() => '')).startsWith('c1000000000001'), { what: 'the restarted machine answers' });
    // stop: kill_signal (SIGINT) ends node at once
    await n.ctx.store.updateMachine(m.id, { state: 'stopping' }, { ifState: ['started'] });
    const stopped = await waitState(n, m.id, 'stopped');
    expect(stopped.last_exit).toMatchObject({ signal: 'SIGINT', requested: true });
    expect(stopped.restarts).toBe(0);
    const role = n.roles[0] as HostRole;
    const lines = role.recentLogs({ app: 'web', machine: m.id }, 100).map((l) => `${l.stream} ${l.message}`);
    expect(lines).toContain('stdout listening');
    expect(lines.some((l) => /^sixpn process killed by SIGKILL; restart 1 in 100 ms/.test(l))).toBe(true);
    expect(lines.some((l) => /^sixpn LOCAL DRIVER: no network isolation/.test(l))).toBe(true);
    await n.ctx.store.updateMachine(m.id, { state: 'destroying' });
    await waitFor(() => !machineOf(n, m.id), { what: 'the machine removed' });
    expect(existsSync(join(n.ctx.config.host.state_dir, 'machines', m.id))).toBe(false);
    await stopNode(n);
  });

  it('applies on-failure with max_retries and no; SIGKILLs a process that ignores kill_signal after kill_timeout', async () => {
    const n = await startHost('h3');
    await n.ctx.store.registerMachine({ id: 'c2000000000001', app: 'web', region: 'ewr', host: 'h3', config: { cmd: ['sh', '-c', 'exit 3'], restart: { policy: 'on-failure', max_retries: 2 } } }, { hostId: 0 });
    const failed = await waitState(n, 'c2000000000001', 'failed');
    expect(failed).toMatchObject({ restarts: 2, last_exit: { exit_code: 3, signal: null } });
    expect(failed.state_reason).toMatch(/gave up after 2 restarts in a row/);
    // one decision per exit: a process that dies at once is started exactly 1 + max_retries times
    const notes = (n.roles[0] as HostRole).recentLogs({ app: 'web', machine: 'c2000000000001' }, 100).map((l) => l.message);
    expect(notes.filter((l) => l.startsWith('machine started:'))).toHaveLength(3);
    expect(notes.filter((l) => l.startsWith('process exited with code 3'))).toHaveLength(3);
    await n.ctx.store.registerMachine({ id: 'c3000000000001', app: 'web', region: 'ewr', host: 'h3', config: { cmd: ['sh', '-c', 'exit 0'], restart: { policy: 'no' } } }, { hostId: 0 });
    expect((await waitState(n, 'c3000000000001', 'stopped')).last_exit).toMatchObject({ exit_code: 0 });
    const stubborn = await run(n, 'c4000000000001', { cmd: ['sh', '-c', "trap '' INT; while :; do sleep 0.05; done"], kill_timeout: '300ms' });
    const t0 = Date.now();
    await n.ctx.store.updateMachine(stubborn.id, { state: 'stopping' });
    const s = await waitState(n, stubborn.id, 'stopped');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(280);
    expect(s.last_exit).toMatchObject({ signal: 'SIGKILL', requested: true });
    // a failed start: command not found leaves nothing but the failed record
    await n.ctx.store.registerMachine({ id: 'c5000000000001', app: 'web', region: 'ewr', host: 'h3', config: { cmd: ['no-such-program-xyz'] } }, { hostId: 0 });
    expect((await waitState(n, 'c5000000000001', 'failed')).state_reason).toMatch(/command not found: no-such-program-xyz/);
    await stopNode(n);
  });

  it('adopts its machines after an agent restart: same processes, none started twice', async () => {
    let n = await startHost('h4');
    const m = await run(n, 'c6000000000001', { cmd: ['node', '-e', SERVER] });
    const pid = pidOf(n, m.id);
    await stopNode(n); // stop_on_exit = false: the machine runs on
    process.kill(pid, 0);
    n = await startHost('h4');
    await new Promise((r) => setTimeout(r, 700)); // a resync passes
    expect(machineOf(n, m.id)?.state).toBe('started');
    expect(pidOf(n, m.id)).toBe(pid);
    expect(MachineProcess.adopt(join(n.ctx.config.host.state_dir, 'machines', m.id))?.pid).toBe(pid);
    // its exit is still seen, and the policy applied, by the new agent
    process.kill(pid, 'SIGKILL');
    await waitFor(() => (machineOf(n, m.id)?.restarts ?? 0) >= 1, { what: 'the restart by the new agent' });
    await waitState(n, m.id, 'started');
    await stopNode(n);
    // stop_on_exit: the machine is stopped with the agent and marked so
    n = await startHost('h4', 'stop_on_exit = true', 'h4-stop.toml');
    const pid2 = pidOf(n, m.id);
    await stopNode(n);
    expect(() => process.kill(pid2, 0)).toThrow();
    n = await startHost('h4');
    expect(machineOf(n, m.id)).toMatchObject({ state: 'stopped', state_reason: 'host h4 shut down' });
    await stopNode(n);
  });

  it('removes leftovers of machines the catalog no longer has, but keeps them when the catalog never knew the host', async () => {
    let n = await startHost('h5');
    await stopNode(n);
    const stale = join(dir, 'h5-state', 'machines', 'dead00000000001');
    const orphan = await MachineProcess.launch(stale, { argv: ['sleep', '30'], env: { PATH: process.env.PATH! }, cwd: '/' });
    n = await startHost('h5');
    expect(await orphan.exited).toMatchObject({ signal: 'SIGTERM' });
    await waitFor(() => !existsSync(stale), { what: 'the leftover folder removed' });
    await stopNode(n);
    // a catalog that never knew the host (wiped, or another one): the leftover is left alone
    const kept = await MachineProcess.launch(join(dir, 'h5-state', 'machines', 'dead00000000002'), { argv: ['sleep', '30'], env: { PATH: process.env.PATH! }, cwd: '/' });
    rmSync(join(dir, 'h5-catalog.json'));
    n = await startHost('h5');
    await new Promise((r) => setTimeout(r, 700));
    process.kill(kept.pid, 0);
    kept.signal('SIGKILL');
    await stopNode(n);
  });

  it('suspends a machine (its process group stopped, its socket kept) and resumes it with the same process; an agent restart keeps it frozen', async () => {
    let n = await startHost('h9');
    const m = await run(n, 'c9000000000001', { cmd: ['node', '-e', SERVER] });
    await waitFor(async () => (await get(m.upstream!).catch(() => '')).startsWith('c9000000000001'), { what: 'the machine answers' });
    const pid = pidOf(n, m.id);
    const state = (): string => {
      const t = readFileSync(`/proc/${pid}/stat`, 'utf8');
      return t.slice(t.lastIndexOf(')') + 2, t.lastIndexOf(')') + 3);
    };
    await n.ctx.store.updateMachine(m.id, { state: 'suspending' }, { ifState: ['started'] });
    await waitState(n, m.id, 'suspended');
    expect(state()).toBe('T');
    // the kernel still takes the connection; nothing answers while it is frozen
    const frozen = await request(`http://${m.upstream}/`, { headersTimeout: 300 }).then(() => 'answered', (e: Error & { code?: string }) => e.code);
    expect(frozen).toBe('UND_ERR_HEADERS_TIMEOUT');
    // an agent restart adopts it still frozen and leaves it so
    await stopNode(n);
    n = await startHost('h9');
    await new Promise((r) => setTimeout(r, 300));
    expect(machineOf(n, m.id)?.state).toBe('suspended');
    expect(state()).toBe('T');
    const t0 = performance.now();
    await n.ctx.store.updateMachine(m.id, { state: 'starting' }, { ifState: ['suspended'] });
    await waitState(n, m.id, 'started');
    const resumedMs = performance.now() - t0;
    expect(await get(m.upstream!)).toMatch(/^c9000000000001/);
    expect(pidOf(n, m.id)).toBe(pid);
    expect(state()).not.toBe('T');
    expect(resumedMs).toBeLessThan(2_000);
    // The host writes `started` first (what callers wait for) and its note right after.
    const notes = () => (n.roles[0] as HostRole).recentLogs({ app: 'web', machine: m.id }, 100).map((l) => l.message);
    await expect.poll(() => notes().some((l) => l.startsWith('resumed: processes continued (SIGCONT)')), { timeout: 3_000 }).toBe(true);
    expect(notes().some((l) => l.startsWith('suspended: processes stopped (SIGSTOP)'))).toBe(true);
    // a stop of a suspended machine delivers its kill_signal (it is continued for it)
    await n.ctx.store.updateMachine(m.id, { state: 'suspending' }, { ifState: ['started'] });
    await waitState(n, m.id, 'suspended');
    await n.ctx.store.updateMachine(m.id, { state: 'stopping' }, { ifState: ['suspended'] });
    const stopped = await waitState(n, m.id, 'stopped');
    expect(stopped.last_exit).toMatchObject({ signal: 'SIGINT', requested: true });
    expect(existsSync(`/proc/${pid}`)).toBe(false);
    await stopNode(n);
  });

  it('refuses a host id clash and bad heartbeat settings, changing nothing', async () => {
    const a = await startHost('h6');
    const id = formatHostId(a.ctx.view.hosts.get('h6')!.host_id);
    await stopNode(a);
    // same catalog file, another name, the same host id
    writeFileSync(join(dir, 'h7-catalog.json'), readFileSync(join(dir, 'h6-catalog.json')));
    await expect(startHost('h7', `host_id = "${id}"`)).rejects.toThrow(new RegExp(`host id ${id} is already used by host h6`));
    const cat = JSON.parse(readFileSync(join(dir, 'h7-catalog.json'), 'utf8')) as { hosts: { name: string }[] };
    expect(cat.hosts.map((h) => h.name)).toEqual(['h6']);
    await expect(startHost('h8', 'heartbeat_interval = "2s"')).rejects.toThrow(/heartbeat_timeout: must be longer/);
    expect(existsSync(join(dir, 'h8-state'))).toBe(false);
  });
});
