import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig, parseConfig } from '../../../src/config/index.js';
import { ConfigError } from '../../../src/errors.js';

const dir = mkdtempSync(join(tmpdir(), 'sixpn-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function write(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('config', () => {
  it('has working defaults', () => {
    const c = parseConfig({}, {});
    expect(c.catalog.store).toBe('embedded');
    expect(c.node.region).toBe('ewr');
    expect(c.proxy.connect_tries).toBe(3);
    expect(c.dns.ttl).toBe(5);
    expect(c.control.listen).toEqual({ host: '127.0.0.1', port: 4280 });
  });

  it('parses durations in fly.toml style', () => {
    const c = parseConfig({ proxy: { connect_timeout: '500ms', idle_timeout: '2m', queue_timeout: 250 } }, {});
    expect(c.proxy.connect_timeout).toBe(500);
    expect(c.proxy.idle_timeout).toBe(120_000);
    expect(c.proxy.queue_timeout).toBe(250);
  });

  it('names every bad key in one error', () => {
    const err = configError(() =>
      parseConfig({ node: { region: 'EWR1' }, proxy: { mode: 'teleport', connect_timeout: 'soon' }, bogus: 1, catalog: { store: 'mysql' } }, {}),
    );
    for (const key of ['node.region', 'proxy.mode', 'proxy.connect_timeout', 'catalog.store', '"bogus"']) expect(err.message).toContain(key);
  });

  it('lets environment variables override secrets and endpoints', () => {
    const c = parseConfig({ control: { token: 'from-file-0123456789' } }, { SIXPN_TOKEN: 'from-env-0123456789', SIXPN_REDIS_URL: 'redis://10.0.0.1:6380', LOG_LEVEL: 'debug' });
    expect(c.control.token).toBe('from-env-0123456789');
    expect(c.catalog.redis_url).toBe('redis://10.0.0.1:6380');
    expect(c.log.level).toBe('debug');
    expect(() => parseConfig({}, { LOG_LEVEL: 'loud' })).toThrow(/LOG_LEVEL/);
  });

  it('loads TOML, resolves paths against the file and freezes the result', () => {
    const p = write('a.toml', '[node]\nregion = "lhr"\n[catalog]\npath = "state/cat.json"\n[[orgs]]\nname = "acme"\nnetwork_id = 24\n');
    const { config, baseDir } = loadConfig(p, {});
    expect(baseDir).toBe(dir);
    expect(config.node.region).toBe('lhr');
    expect(config.catalog.path).toBe(join(dir, 'state/cat.json'));
    expect(config.regions.file).toMatch(/config\/regions\.csv$/);
    expect(config.orgs).toEqual([{ name: 'acme', network_id: 24 }]);
    expect(Object.isFrozen(config.node)).toBe(true);
  });

  it.each([
    ['not TOML', 'this is = = not toml', /not valid TOML/],
    ['a bad seed', '[[apps]]\nname = "Web App"\norg = "acme"\n', /apps\.0\.name/],
    ['a bad listen', '[control]\nlisten = "localhost"\n', /control\.listen/],
    ['a bad host id', '[node]\nhost_id = "zz"\n', /node\.host_id/],
  ])('refuses %s with the key named', (_what, text, re) => {
    const p = write('bad.toml', text);
    const err = configError(() => loadConfig(p, {}));
    expect(err.message).toMatch(re);
    expect(err.message).toContain(p);
  });

  // Issue 11 item 9: every duration bounded by what Node's timers hold, every address checked,
  // tokens long enough; each refusal names its key.
  it.each([
    ['a duration that overflows a timer', { proxy: { connect_timeout: '600h' } }, 'proxy.connect_timeout', /at most/],
    ['a header timeout a server cannot hold', { proxy: { header_timeout: '600h' } }, 'proxy.header_timeout', /at most/],
    ['a health interval in ms past the limit', { health: { slow_start: 3_000_000_000 } }, 'health.slow_start', /at most/],
    ['a check interval past the limit', { apps: [{ name: 'web', org: 'acme', services: [{ internal_port: 80, ports: [{ port: 80 }], tcp_checks: [{ interval: '1000h' }] }] }] }, 'apps.0.services.0.tcp_checks.0.interval', /at most/],
    ['an allow CIDR that is not one', { proxy: { allow: [{ cidr: '10.0.0.0/33', org: 'acme' }] } }, 'proxy.allow.0.cidr', /CIDR/],
    ['an allow CIDR that is a word', { proxy: { allow: [{ cidr: 'office', org: 'acme' }] } }, 'proxy.allow.0.cidr', /CIDR/],
    ['an allow rule naming no valid org', { proxy: { allow: [{ cidr: '10.0.0.0/8', org: 'Not An Org' }] } }, 'proxy.allow.0.org', /lowercase/],
    ['the infrastructure host id', { node: { host_id: '0:0' } }, 'node.host_id', /reserved/],
    ['the Flycast host id', { node: { host_id: '0:1' } }, 'node.host_id', /reserved/],
    ['a gateway host id that is not one', { wireguard: { host_id: 'zz' } }, 'wireguard.host_id', /hextets/],
    ['a reserved gateway host id', { wireguard: { host_id: '0:1' } }, 'wireguard.host_id', /reserved/],
    ['the node and gateway on one host id', { node: { host_id: 'a7b:d6b' } }, 'wireguard.host_id', /node\.host_id/],
    ['a dev mapping to a non-Flycast address', { proxy: { dev_mappings: [{ listen_port: 1, flycast: 'fdaa:0:18:a7b:7d:1:2:2', port: 80 }] } }, 'proxy.dev_mappings.0.flycast', /Flycast/],
    ['a dev mapping caller that is not an address', { proxy: { dev_mappings: [{ listen_port: 1, flycast: 'fdaa:0:18:0:1::3', port: 80, as_caller: 'me' }] } }, 'proxy.dev_mappings.0.as_caller', /IP address/],
    ['a dev mapping host that is not an address', { proxy: { dev_mappings: [{ listen_port: 1, listen_host: 'lo cal', flycast: 'fdaa:0:18:0:1::3', port: 80 }] } }, 'proxy.dev_mappings.0.listen_host', /IP address/],
    ['a listen address with a bad IPv4', { control: { listen: '999.0.0.1:4280' } }, 'control.listen', /host/],
    ['a gateway endpoint with a bad port', { wireguard: { endpoint: 'gw.example.com:70000' } }, 'wireguard.endpoint', /port/],
    ['a demo host that is not a host', { demo: { host: 'not a host' } }, 'demo.host', /host/],
    ['a Redis URL that is not one', { catalog: { redis_url: 'localhost:6379' } }, 'catalog.redis_url', /redis:\/\//],
    ['a machine upstream with a port over 65535', { machines: [{ app: 'web', region: 'ewr', upstream: '127.0.0.1:99999' }] }, 'machines.0.upstream', /port/],
    ['a machine upstream with a bad IPv4', { machines: [{ app: 'web', region: 'ewr', upstream: '300.1.1.1:80' }] }, 'machines.0.upstream', /host/],
    ['a one-character token', { control: { token: 'x' } }, 'control.token', /16 characters/],
    ['a fifteen-character token', { control: { token: 'x'.repeat(15) } }, 'control.token', /16 characters/],
    ['a demo token on a public listener', { control: { token: 'demo-token', demo_token: true, listen: '0.0.0.0:4280' } }, 'control.demo_token', /loopback/],
  ])('refuses %s, naming the key', (_what, raw, key, re) => {
    const err = configError(() => parseConfig(raw, {}));
    expect(err.message).toContain(key);
    expect(err.message).toMatch(re);
  });

  it('names a short SIXPN_TOKEN as such', () => {
    const err = configError(() => parseConfig({ control: { token: 'a-long-enough-file-token' } }, { SIXPN_TOKEN: 'short' }));
    expect(err.message).toContain('SIXPN_TOKEN');
    expect(err.message).toMatch(/16 characters/);
    expect(parseConfig({ control: { token: 'short' } }, { SIXPN_TOKEN: 'a-long-enough-env-token' }).control.token).toBe('a-long-enough-env-token');
  });

  it('accepts the bounds themselves, valid addresses and a marked demo token on loopback', () => {
    const c = parseConfig(
      {
        node: { host_id: '0:2' },
        control: { token: 'demo-token', demo_token: true, listen: '[::1]:4280' },
        proxy: { connect_timeout: 2_147_483_647, allow: [{ cidr: '10.0.0.0/8', org: 'acme' }, { cidr: 'fd00::/8', org: 'acme' }] },
        wireguard: { endpoint: '[2001:db8::1]:51820' },
        catalog: { redis_url: 'rediss://user:pw@redis.internal:6380/2' },
        machines: [{ app: 'web', region: 'ewr', upstream: 'db.example.com:5432' }, { app: 'web', region: 'ewr', upstream: '[::1]:1' }],
      },
      {},
    );
    expect(c.proxy.connect_timeout).toBe(2_147_483_647);
    expect(c.control.demo_token).toBe(true);
  });

  it('refuses a missing file', () => {
    expect(() => loadConfig(join(dir, 'nope.toml'), {})).toThrow(/cannot read config file/);
  });
});
