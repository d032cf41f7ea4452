/**
 * The `sixpn` CLI against a real control API process: flyctl-style tables, --json listings,
 * one-line errors with exit codes, and `wireguard create` checked with real wireguard-tools.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startControl, type TestControl } from '../harness/control.js';
import { hasCommand } from '../harness/env.js';
import { freePort } from '../harness/net.js';
import { runSixpn, startSixpn } from '../harness/procs.js';

let c: TestControl;
let env: NodeJS.ProcessEnv;
let work: string;

const sixpn = (args: string[], extraEnv: NodeJS.ProcessEnv = {}) => runSixpn(args, { env: { ...env, ...extraEnv }, cwd: work });

/** Runs a CLI command that must fail: one `Error:` line, the exit code, and no catalog change. */
async function fails(args: string[], code: number, message: RegExp, extraEnv: NodeJS.ProcessEnv = {}): Promise<void> {
  const before = c.catalogText();
  const r = await sixpn(args, extraEnv);
  expect(r.code, r.stderr).toBe(code);
  const lines = r.stderr.trimEnd().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^Error: /);
  expect(lines[0]).toMatch(message);
  expect(c.catalogText()).toBe(before);
}

function confValue(text: string, key: string): string {
  const m = new RegExp(`^${key}\\s*=\\s*(.+)$`, 'm').exec(text);
  if (!m) throw new Error(`no ${key} in config`);
  return m[1]!.trim();
}

beforeAll(async () => {
  c = await startControl({ extraToml: '[wireguard]\nstate_file = "gateway.json"\nendpoint = "gw.test:51820"' });
  work = join(c.dir, 'work');
  mkdirSync(work);
  env = { ...process.env, SIXPN_API_URL: c.url, SIXPN_TOKEN: c.token };
});

afterAll(async () => {
  await c?.stop();
});

describe('sixpn catalog commands', () => {
  it('creates and lists orgs (endpoint and token from --config)', async () => {
    const bare = { ...env };
    delete bare.SIXPN_API_URL;
    delete bare.SIXPN_TOKEN;
    const r = await runSixpn(['orgs', 'create', 'acme', '--network-id', '0x18', '--config', c.configFile], { env: bare, cwd: work });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/Created org acme: network id 24, prefix fdaa:0:18::\/48, DNS fdaa:0:18::3/);
    expect((await sixpn(['orgs', 'create', 'globex', '--network-id', '8887'])).code).toBe(0);
    const t = await sixpn(['orgs', 'list']);
    const rows = t.stdout.trimEnd().split('\n').map((l) => l.split(/\t/).map((s) => s.trim()));
    expect(rows[0]).toEqual(['NAME', 'NETWORK ID', 'PREFIX', 'DNS']);
    expect(rows).toContainEqual(['globex', '8887', 'fdaa:0:22b7::/48', 'fdaa:0:22b7::3']);
    const j = JSON.parse((await sixpn(['orgs', 'list', '--json'])).stdout);
    expect(j.map((o: { name: string }) => o.name).sort()).toEqual(['acme', 'globex']);
  });

  it('creates apps with services from a fly.toml', async () => {
    const toml = join(work, 'fly.toml');
    writeFileSync(toml, 'app = "web"\n[[services]]\nprotocol = "tcp"\ninternal_port = 8080\n[[services.ports]]\nport = 80\nhandlers = ["http"]\n');
    const r = await sixpn(['apps', 'create', 'web', '--org', 'acme', '--services', toml]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^New app created: web/);
    expect((await sixpn(['apps', 'create', 'db', '--org', 'globex'])).code).toBe(0);
    const t = await sixpn(['apps', 'list', '--org', 'acme']);
    expect(t.stdout).toMatch(/^NAME\s+ORG\s+SERVICES\nweb\s+acme\s+tcp 80->8080\n$/);
    const j = JSON.parse((await sixpn(['apps', 'list', '--json'])).stdout);
    expect(j.find((a: { name: string }) => a.name === 'web').services[0].internal_port).toBe(8080);
  });

  it('registers, lists, stops, starts and removes machines', async () => {
    const r = await sixpn(['machines', 'register', '--app', 'web', '--region', 'ams', '--id', 'abcdef0123456789', '--upstream', '127.0.0.1:9']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('fdaa:0:18:a7b:7d:abcd:ef01:2');
    expect((await sixpn(['machines', 'stop', 'abcdef0123456789'])).stdout).toBe('Machine abcdef0123456789 is stopped\n');
    const t = await sixpn(['machines', 'list', '--app', 'web']);
    expect(t.stdout.split('\n')[0]).toMatch(/^ID\s+APP\s+REGION\s+STATE\s+HEALTH\s+ADDRESS\s+UPSTREAM\s+UPDATED$/);
    expect(t.stdout.split('\n')[1]).toMatch(/^abcdef0123456789\s+web\s+ams\s+stopped\s+unknown\s+fdaa:0:18:a7b:7d:abcd:ef01:2\s+127\.0\.0\.1:9\s+just now$/);
    expect((await sixpn(['machines', 'start', '--id', 'abcdef0123456789'])).code).toBe(0);
    const j = JSON.parse((await sixpn(['machines', 'list', '--app', 'web', '--json'])).stdout);
    expect(j[0].state).toBe('started');
    expect((await sixpn(['machines', 'register', '--app', 'web', '--region', 'fra'])).code).toBe(0);
    expect((await sixpn(['machines', 'remove', 'abcdef0123456789'])).code).toBe(0);
    expect(JSON.parse((await sixpn(['machines', 'list', '--app', 'web', '--json'])).stdout)).toHaveLength(1);
  });

  it('allocates a private v6 address and prints the flyctl table', async () => {
    const r = await sixpn(['ips', 'allocate-v6', '--private', '--app', 'web']);
    expect(r.code, r.stderr).toBe(0);
    const [head, row, ...rest] = r.stdout.split('\n');
    expect(head).toMatch(/^VERSION\tIP\s*\tTYPE\s*\tREGION\tCREATED AT$/);
    const cells = row!.split('\t').map((s) => s.trim());
    expect(cells).toEqual(['v6', 'fdaa:0:18:0:1::3', 'private', 'global', 'just now']);
    expect(rest).toEqual(['']);
    const cross = await sixpn(['ips', 'allocate-v6', '--private', '--app', 'web', '--org', 'globex', '--json']);
    expect(JSON.parse(cross.stdout)).toMatchObject({ app: 'web', org: 'globex', type: 'private_v6' });
    const list = JSON.parse((await sixpn(['ips', 'list', '--app', 'web', '--json'])).stdout);
    expect(list.map((i: { address: string }) => i.address)).toEqual(['fdaa:0:18:0:1::3', 'fdaa:0:22b7:0:1::3']);
    const t = await sixpn(['ips', 'list', '--app', 'web']);
    expect(t.stdout.split('\n')[0]).toMatch(/^VERSION\s+IP\s+TYPE\s+REGION\s+CREATED AT\s+ORG$/);
    expect((await sixpn(['ips', 'release', 'fdaa:0:22b7:0:1::3', '--app', 'web', '--org', 'globex'])).code).toBe(0);
  });
});

describe('sixpn errors: one line, an exit code, nothing changed', () => {
  it('bad input exits 2', async () => {
    await fails(['apps', 'create', 'Bad_Name', '--org', 'acme'], 2, /name/);
    await fails(['machines', 'register', '--app', 'web', '--region', 'zzz'], 2, /region/);
    await fails(['ips', 'allocate-v6', '--app', 'web'], 2, /--private/);
    await fails(['ips', 'release', 'not-an-ip', '--app', 'web'], 2, /not an IPv6 address/);
    await fails(['apps', 'destroy', 'web'], 2, /--yes/);
  });

  it('unknown things exit 4, duplicates 5, another org 3', async () => {
    await fails(['machines', 'list', '--app', 'nope'], 4, /app nope not found/);
    await fails(['apps', 'create', 'web', '--org', 'acme'], 5, /already exists/);
    await fails(['ips', 'release', 'fdaa:0:18:0:1::3', '--app', 'web', '--org', 'globex'], 3, /does not belong to org globex/);
  });

  it('a wrong or missing token exits 3', async () => {
    await fails(['apps', 'list'], 3, /invalid bearer token/, { SIXPN_TOKEN: 'wrong' });
    await fails(['orgs', 'create', 'evil'], 3, /invalid bearer token/, { SIXPN_TOKEN: 'wrong' });
    const bare = { ...env };
    delete bare.SIXPN_TOKEN;
    const r = await runSixpn(['apps', 'list'], { env: bare, cwd: work });
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/^Error: no API token/);
  });

  it('an unreachable API exits 69 with a clear message', async () => {
    await fails(['apps', 'list'], 69, /cannot reach the sixpn control API at http:\/\/127\.0\.0\.1:1: ECONNREFUSED/, { SIXPN_API_URL: 'http://127.0.0.1:1' });
  });

  it('unknown commands and options exit 2', async () => {
    await fails(['frobnicate'], 2, /unknown command "frobnicate"/);
    await fails(['apps', 'explode'], 2, /unknown apps command "explode"; one of: list, create, destroy/);
    await fails(['apps', 'list', '--bogus'], 2, /bogus/);
    await fails(['apps', 'list', '--region', 'ams'], 2, /does not take --region/);
  });

  it('--help lists every command and exits 0', async () => {
    const r = await sixpn(['--help']);
    expect(r.code).toBe(0);
    for (const w of ['apps list', 'machines register', 'ips allocate-v6', 'wireguard create', 'up', 'gateway']) expect(r.stdout).toContain(`sixpn ${w}`);
    const one = await sixpn(['wireguard', 'create', '--help']);
    expect(one.stdout).toMatch(/^usage: sixpn wireguard create ORG REGION \[NAME\]/);
  });
});

describe.skipIf(!hasCommand('wg') || !hasCommand('wg-quick'))('sixpn wireguard', () => {
  it('create writes a config that wireguard-tools accept, with only the public key registered', async () => {
    const file = join(work, 'laptop1.conf');
    const r = await sixpn(['wireguard', 'create', 'acme', 'ams', 'laptop1', '--output', file]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/cannot be recovered/);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const text = readFileSync(file, 'utf8');
    const privateKey = confValue(text, 'PrivateKey');
    const derived = execFileSync('wg', ['pubkey'], { input: `${privateKey}\n` }).toString().trim();
    const peers = (await c.api('GET', '/v1/orgs/acme/wireguard')).body as { name: string; public_key: string; address: string }[];
    const peer = peers.find((p) => p.name === 'laptop1')!;
    expect(peer.public_key).toBe(derived);
    expect(confValue(text, 'Address')).toBe(`${peer.address}/120`);
    expect(peer.address).toMatch(/^fdaa:0:18:a7b:d6b:/);
    expect(confValue(text, 'DNS')).toBe('fdaa:0:18::3');
    expect(confValue(text, 'AllowedIPs')).toBe('fdaa:0:18::/48');
    expect(confValue(text, 'Endpoint')).toBe('gw.test:51820');
    expect(confValue(text, 'PersistentKeepalive')).toBe('15');
    const gw = JSON.parse(readFileSync(join(c.dir, 'gateway.json'), 'utf8'));
    expect(confValue(text, 'PublicKey')).toBe(gw.public_key);
    // wg-quick strip parses the file as wg-quick up would; its output feeds `wg setconf`.
    const strip = execFileSync('wg-quick', ['strip', file]).toString();
    expect(strip).toContain(`PrivateKey = ${privateKey}`);
    expect(strip).not.toMatch(/^(Address|DNS)\s*=/m);
    // The private key is nowhere in the catalog.
    expect(c.catalogText()).toContain(derived);
    expect(c.catalogText()).not.toContain(privateKey);
  });

  it('create picks an interactive-<...> name of at most 15 characters and writes <name>.conf', async () => {
    const r = await sixpn(['wireguard', 'create', 'globex', 'fra']);
    expect(r.code, r.stderr).toBe(0);
    const name = /Created WireGuard peer (\S+)/.exec(r.stdout)![1]!;
    expect(name).toMatch(/^interactive-[a-z0-9]+$/);
    expect(name.length).toBeLessThanOrEqual(15);
    expect(existsSync(join(work, `${name}.conf`))).toBe(true);
    const t = await sixpn(['wireguard', 'list', 'globex']);
    expect(t.stdout.split('\n')[0]).toMatch(/^NAME\s+REGION\s+ADDRESS\s+PUBLIC KEY\s+HANDSHAKE\s+RX\s+TX$/);
    expect(t.stdout).toContain(name);
    expect((await sixpn(['wireguard', 'remove', 'globex', name])).code).toBe(0);
    expect(JSON.parse((await sixpn(['wireguard', 'list', 'globex', '--json'])).stdout)).toEqual([]);
  });

  it('refuses names over 15 characters with the reason, and existing files', async () => {
    await fails(['wireguard', 'create', 'acme', 'ams', 'a-very-long-name'], 2, /at most 15 characters \(it becomes a Linux interface name\)/);
    expect(existsSync(join(work, 'a-very-long-name.conf'))).toBe(false);
    await fails(['wireguard', 'create', 'acme', 'ams', 'laptop2', '--output', join(work, 'laptop1.conf')], 5, /already exists/);
    await fails(['wireguard', 'create', 'acme', 'ams', 'laptop1', '--output', join(work, 'other.conf')], 5, /already exists in org acme/);
    expect(existsSync(join(work, 'other.conf'))).toBe(false);
    await fails(['wireguard', 'create', 'acme'], 2, /missing region/);
    await fails(['wireguard', 'remove', 'acme', 'ghost'], 4, /not found/);
  });
});

describe('sixpn up', () => {
  it('starts the enabled roles, prints one ready line with their descriptions, and exits 0 on SIGTERM', async () => {
    const port = await freePort();
    const file = join(work, 'up.toml');
    writeFileSync(
      file,
      `[catalog]\npath = ""\n[log]\nlevel = "warn"\n[control]\nlisten = "127.0.0.1:${port}"\ntoken = "test-token-0123456789"\n` +
        '[health]\nenabled = false\n[proxy]\nenabled = false\n[dns]\nenabled = false\n',
    );
    const p = startSixpn(['up', '--config', file]);
    expect(await p.waitForLine(/sixpn ready/)).toBe('sixpn ready: node sixpn, roles control');
    await p.waitForLine(new RegExp(`control: http://127\\.0\\.0\\.1:${port} `));
    const r = await runSixpn(['orgs', 'list', '--json', '--api', `http://127.0.0.1:${port}`, '--token', 'test-token-0123456789']);
    expect(JSON.parse(r.stdout)).toEqual([]);
    expect(await p.stop('SIGTERM')).toBe(0);
  });
});
