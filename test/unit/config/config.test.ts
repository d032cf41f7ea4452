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
    const c = parseConfig({ control: { token: 'from-file' } }, { SIXPN_TOKEN: 'from-env', SIXPN_REDIS_URL: 'redis://10.0.0.1:6380', LOG_LEVEL: 'debug' });
    expect(c.control.token).toBe('from-env');
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

  it('refuses a missing file', () => {
    expect(() => loadConfig(join(dir, 'nope.toml'), {})).toThrow(/cannot read config file/);
  });
});
