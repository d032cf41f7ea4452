import { connect } from 'node:net';
import { resolve } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../../src/config/index.js';
import { startDemoRole, type DemoRole } from '../../../src/demo/index.js';
import { formatTry, tryCommands } from '../../../src/demo/try.js';
import { ROOT } from '../../harness/env.js';
import { startTestNode, type TestNode } from '../../harness/test-node.js';

let node: TestNode | null = null;
let demo: DemoRole | null = null;
afterEach(async () => {
  await demo?.close();
  await node?.close();
  demo = null;
  node = null;
});

function tcpGreeting(upstream: string, line: string): Promise<string> {
  const [host, port] = [upstream.slice(0, upstream.lastIndexOf(':')), Number(upstream.slice(upstream.lastIndexOf(':') + 1))];
  return new Promise((res, rej) => {
    const s = connect(port, host, () => s.write(`${line}\n`));
    let got = '';
    s.on('data', (b) => {
      got += b.toString();
      if (got.includes(`${line}\n`)) {
        s.end();
        res(got);
      }
    });
    s.on('error', rej);
  });
}

describe('demo role', () => {
  it('serves each machine of the demo apps and points its upstream at it before returning', async () => {
    node = await startTestNode({ demo: { enabled: true, apps: ['hello', 'echo'] } });
    demo = await startDemoRole(node.ctx);
    expect(demo.machines().size).toBe(3);
    const hello = node.ctx.view.machines.get('e286d4c2a17d89')!;
    expect(hello.upstream).toMatch(/^127\.0\.0\.1:\d+$/);
    const r = await fetch(`http://${hello.upstream}/some/path`);
    expect(r.status).toBe(200);
    expect(r.headers.get('x-machine-id')).toBe('e286d4c2a17d89');
    expect(await r.text()).toBe('hello from machine e286d4c2a17d89 of app hello in region ewr (Secaucus)\nGET /some/path\n');
    const echo = node.ctx.view.machines.get('3d8d9e1a7c5e89')!;
    const got = await tcpGreeting(echo.upstream!, 'ping');
    expect(got).toBe('echo from machine 3d8d9e1a7c5e89 of app echo in region iad (Ashburn)\nping\n');
    // Apps not listed are left alone.
    expect(demo.machines().has('billing')).toBe(false);
  });

  it('fails on purpose after /_demo/fail so health checks see it, and recovers', async () => {
    node = await startTestNode({ demo: { enabled: true, apps: ['hello'] } });
    demo = await startDemoRole(node.ctx);
    const up = node.ctx.view.machines.get('9080e254f03418')!.upstream!;
    expect((await fetch(`http://${up}/_demo/fail`)).status).toBe(500);
    expect((await fetch(`http://${up}/`)).status).toBe(500);
    expect((await fetch(`http://${up}/_demo/recover`)).status).toBe(200);
  });

  it('serves machines registered later and stops serving removed ones; close frees every port', async () => {
    node = await startTestNode({ demo: { enabled: true, apps: ['hello'] } });
    demo = await startDemoRole(node.ctx);
    const m = await node.store.registerMachine({ app: 'hello', region: 'iad' }, { hostId: 0x0a7b007d });
    const d = demo;
    const n = node;
    await expect.poll(() => n.ctx.view.machines.get(m.id)?.upstream, { timeout: 2000 }).toMatch(/^127\.0\.0\.1:/);
    const up = n.ctx.view.machines.get(m.id)!.upstream!;
    expect(await (await fetch(`http://${up}/`)).text()).toContain(`machine ${m.id} of app hello in region iad`);
    await n.store.removeMachine(m.id);
    await expect.poll(() => d.machines().has(m.id), { timeout: 2000 }).toBe(false);
    await expect(fetch(`http://${up}/`)).rejects.toThrow();
    const left = [...d.machines().values()].map((x) => x.upstream);
    await d.close();
    for (const u of left) await expect(fetch(`http://${u}/`)).rejects.toThrow();
  });

  it('prints working commands from config/demo.toml: dashboard, curl per mapping, refused cross-org, dig, cli, metrics', async () => {
    const loaded = loadConfig(resolve(ROOT, 'config/demo.toml'), {});
    node = await startTestNode({ orgs: loaded.config.orgs, apps: loaded.config.apps, machines: loaded.config.machines, ips: loaded.config.ips });
    const cmds = tryCommands(loaded.config, node.ctx.view, node.ctx.regions, ROOT);
    const byWhat = (w: string) => cmds.filter((c) => c.what === w).map((c) => c.run);
    expect(byWhat('dashboard')).toEqual(['http://127.0.0.1:4280/dashboard?token=demo-token']);
    expect(byWhat('curl')).toEqual(['curl -s http://127.0.0.1:10080/']);
    expect(byWhat('tcp')).toEqual(['nc 127.0.0.1 10007']);
    expect(byWhat('refused')).toEqual(['curl -s http://127.0.0.1:10081/']);
    // sleepy scales to zero (auto_stop_machines = "stop"): its own line, with the idle period
    expect(byWhat('scale')).toEqual(['curl -s http://127.0.0.1:10082/']);
    expect(cmds.find((c) => c.what === 'scale')!.note).toMatch(/app sleepy: scales to zero \(auto_stop_machines = "stop"\): 1 min idle and its machine is stopped; this request starts it/);
    expect(byWhat('dns')).toEqual(['dig @127.0.0.1 -p 8053 +short _apps.internal TXT', 'dig @127.0.0.1 -p 8053 +short hello.internal AAAA']);
    const cli = 'SIXPN_API_URL=http://127.0.0.1:4280 SIXPN_TOKEN=demo-token node dist/cli/main.js';
    expect(byWhat('cli')).toEqual([`${cli} ips list --app hello`]);
    // The machine the proxy prefers from ewr is hello's ewr machine.
    expect(byWhat('failover')).toEqual([`${cli} machines stop e286d4c2a17d89 && curl -s http://127.0.0.1:10080/`]);
    expect(byWhat('restore')).toEqual([`${cli} machines start e286d4c2a17d89`]);
    const lines = formatTry(cmds);
    expect(lines[0]).toBe('try:');
    expect(lines.at(-1)).toMatch(/stop\s+Ctrl-C$/);
  });
});
