import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../../src/config/index.js';
import { ConfigError } from '../../../src/errors.js';
import { IdleCaps, NO_ORG } from '../../../src/proxy/admission.js';

describe('idle connection caps', () => {
  it('admits up to the per-source cap, then refuses new connections from that source only', () => {
    const caps = new IdleCaps(2, 10);
    expect(caps.enter('a', '24', true)).toBeNull();
    expect(caps.enter('a', '24', true)).toBeNull();
    expect(caps.enter('a', '24', true)).toBe('source');
    expect(caps.enter('b', '24', true)).toBeNull();
    expect(caps.count('a', '24')).toEqual({ source: 2, org: 3 });
  });

  it('refuses a new source once its org holds the org cap', () => {
    const caps = new IdleCaps(5, 3);
    for (const s of ['a', 'b', 'c']) expect(caps.enter(s, NO_ORG, true)).toBeNull();
    expect(caps.enter('d', NO_ORG, true)).toBe('org');
    expect(caps.enter('d', '24', true)).toBeNull();
  });

  it('always counts a connection going idle after a request, and frees room when one leaves', () => {
    const caps = new IdleCaps(1, 1);
    expect(caps.enter('a', '24', true)).toBeNull();
    expect(caps.enter('a', '24', false)).toBeNull();
    expect(caps.count('a', '24')).toEqual({ source: 2, org: 2 });
    caps.leave('a', '24');
    caps.leave('a', '24');
    expect(caps.count('a', '24')).toEqual({ source: 0, org: 0 });
    expect(caps.enter('a', '24', true)).toBeNull();
  });
});

describe('[proxy] caps config', () => {
  it('has defaults', () => {
    const c = parseConfig({}, {}).proxy;
    expect([c.max_idle_per_source, c.max_idle_per_org, c.max_headers]).toEqual([256, 2048, 100]);
  });

  it.each([
    [{ max_idle_per_source: 0 }, 'proxy.max_idle_per_source'],
    [{ max_idle_per_org: -1 }, 'proxy.max_idle_per_org'],
    [{ max_idle_per_source: 1.5 }, 'proxy.max_idle_per_source'],
    [{ max_idle_per_source: 500, max_idle_per_org: 100 }, 'proxy.max_idle_per_source'],
    [{ max_headers: 5 }, 'proxy.max_headers'],
    [{ max_headers: 5000 }, 'proxy.max_headers'],
  ])('refuses %j naming %s', (proxy, key) => {
    expect(() => parseConfig({ proxy }, {})).toThrow(ConfigError);
    expect(() => parseConfig({ proxy }, {})).toThrow(key);
  });
});
