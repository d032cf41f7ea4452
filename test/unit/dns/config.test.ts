import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../../src/config/index.js';
import { SixpnError } from '../../../src/errors.js';

describe('[dns] config', () => {
  it('has sensible defaults', () => {
    const { dns } = parseConfig({});
    expect(dns).toMatchObject({ port: 53, listen_6pn: true, ttl: 5, upstreams: [], upstream_timeout: 2000, loopback_org: '', tcp_idle_timeout: 10_000, max_tcp_connections: 512 });
  });

  it('reads upstreams with and without ports', () => {
    const { dns } = parseConfig({ dns: { upstreams: ['1.1.1.1', '9.9.9.9:5353', '[2606:4700::1111]:53', '2001:db8::1'], upstream_timeout: '500ms' } });
    expect(dns.upstreams).toEqual([
      { host: '1.1.1.1', port: 53 },
      { host: '9.9.9.9', port: 5353 },
      { host: '2606:4700::1111', port: 53 },
      { host: '2001:db8::1', port: 53 },
    ]);
    expect(dns.upstream_timeout).toBe(500);
  });

  it.each([
    [{ upstreams: ['dns.google'] }, 'dns.upstreams.0'],
    [{ upstreams: ['1.1.1.1:0'] }, 'dns.upstreams.0'],
    [{ listen: ['localhost'] }, 'dns.listen.0'],
    [{ loopback_org: 'Not An Org' }, 'dns.loopback_org'],
    [{ max_tcp_connections: 0 }, 'dns.max_tcp_connections'],
    [{ tpl: 5 }, 'dns: unknown key'],
  ])('names the bad key: %j', (dns, key) => {
    const err = (() => {
      try {
        parseConfig({ dns });
      } catch (e) {
        return e;
      }
      return null;
    })();
    expect(err).toBeInstanceOf(SixpnError);
    expect((err as Error).message).toContain(key);
  });
});
