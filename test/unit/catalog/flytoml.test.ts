// fly.toml's two service shapes read into catalog services: real fly.toml files (as `fly launch`
// writes them), warnings for every key sixpn does not do, errors naming the key of a wrong type.
import { parse } from 'smol-toml';
import { describe, expect, it } from 'vitest';
import { readFlyToml } from '../../../src/catalog/flytoml.js';
import { ValidationError } from '../../../src/errors.js';

const LAUNCHED = `
app = 'margin-prod'
primary_region = 'iad'
kill_signal = 'SIGINT'

[build]

[http_service]
  internal_port = 8080
  force_https = true
  auto_stop_machines = 'suspend'
  auto_start_machines = true
  min_machines_running = 1
  processes = ['app']

  [http_service.concurrency]
    type = 'requests'
    soft_limit = 20
    hard_limit = 25

  [[http_service.checks]]
    grace_period = '5s'
    interval = '15s'
    method = 'GET'
    timeout = '2s'
    path = '/healthz'

[[vm]]
  memory = '1gb'
`;

const SERVICES = `
app = "pg"
primary_region = "ams"

[[services]]
  protocol = "tcp"
  internal_port = 5432
  auto_stop_machines = true
  auto_start_machines = true
  min_machines_running = 0

  [[services.ports]]
    port = 5432
    handlers = ["proxy_proto"]
    proxy_proto_options = { version = "v2" }

  [services.concurrency]
    type = "connections"
    soft_limit = 50
    hard_limit = 60

  [[services.tcp_checks]]
    interval = "10s"
    timeout = "2s"

[[services]]
  internal_port = 4000
  protocol = "tcp"
  auto_stop_machines = false
  [[services.ports]]
    port = 80
    handlers = ["http"]
    force_https = true
  [[services.ports]]
    port = 443
    handlers = ["tls", "http"]
`;

describe('fly.toml services', () => {
  it('reads [http_service] as one HTTP service on port 80 with its autostop keys, concurrency and checks', () => {
    const r = readFlyToml(parse(LAUNCHED), 'margin-prod');
    expect(r.primary_region).toBe('iad');
    expect(r.services).toEqual([
      {
        protocol: 'http',
        internal_port: 8080,
        ports: [{ port: 80, handlers: ['http'] }],
        concurrency: { type: 'requests', soft_limit: 20, hard_limit: 25 },
        tcp_checks: [],
        http_checks: [{ grace_period: 5000, interval: 15000, method: 'GET', timeout: 2000, path: '/healthz', protocol: 'http', headers: {}, tls_skip_verify: false }],
        auto_stop_machines: 'suspend',
        auto_start_machines: true,
        min_machines_running: 1,
      },
    ]);
    expect(r.warnings).toEqual([
      expect.stringMatching(/^kill_signal: not used by sixpn \(ignored\): set per machine/),
      expect.stringMatching(/^build: not used by sixpn/),
      expect.stringMatching(/^vm: not used by sixpn/),
      expect.stringMatching(/^http_service\.force_https: not used by sixpn \(ignored\): HTTPS redirects/),
      expect.stringMatching(/^http_service\.processes: not used by sixpn \(ignored\): process groups/),
    ]);
  });

  it('reads [[services]] with ports, PROXY protocol, concurrency and checks; true/false mean "stop"/"off"', () => {
    const r = readFlyToml(parse(SERVICES), 'pg');
    expect(r.primary_region).toBe('ams');
    expect(r.services).toHaveLength(2);
    expect(r.services[0]).toMatchObject({
      protocol: 'tcp',
      internal_port: 5432,
      ports: [{ port: 5432, handlers: ['proxy_proto'], proxy_proto_options: { version: 'v2' } }],
      concurrency: { type: 'connections', soft_limit: 50, hard_limit: 60 },
      tcp_checks: [{ interval: 10000, timeout: 2000, grace_period: 1000 }],
      auto_stop_machines: 'stop',
      auto_start_machines: true,
      min_machines_running: 0,
    });
    expect(r.services[1]).toMatchObject({ internal_port: 4000, auto_stop_machines: 'off', ports: [{ port: 80 }, { port: 443, handlers: ['tls', 'http'] }] });
    expect(r.services[1]!.auto_start_machines).toBeUndefined();
    expect(r.warnings).toEqual([expect.stringMatching(/^services\.1\.ports\.0\.force_https: not used by sixpn/)]);
  });

  it('names every key it does not use, at any depth, and a different app name', () => {
    const r = readFlyToml({ app: 'other', swap_size_mb: 512, http_service: { internal_port: 80, tls_options: {}, concurrency: { soft_limit: 5, hard_limit: 9, burst: 1 }, checks: [{ path: '/', tls_server_name: 'x' }] } }, 'web');
    expect(r.warnings).toEqual([
      'swap_size_mb: not used by sixpn (ignored): deployment and build settings are not sixpn\'s (machines are run with `sixpn machines run`)',
      'app: fly.toml names app "other"; its services are written to app web',
      expect.stringMatching(/^http_service\.tls_options: not used by sixpn \(ignored\): the proxy does not terminate TLS/),
      'http_service.checks.0.tls_server_name: not used by sixpn (ignored): checks do not speak TLS with SNI',
      'http_service.concurrency.burst: not used by sixpn (ignored)',
    ]);
    expect(r.services[0]!.concurrency).toEqual({ type: 'connections', soft_limit: 5, hard_limit: 9 });
    expect(readFlyToml({ app: 'x' }).warnings).toEqual(['fly.toml has neither [http_service] nor [[services]]: the app gets no services (nothing for Flycast to serve)']);
  });

  const bad: [string, unknown, RegExp][] = [
    ['internal_port of the wrong type', { http_service: { internal_port: '8080' } }, /^invalid fly\.toml: http_service\.internal_port: Expected number, received string$/],
    ['auto_stop_machines not a choice', { http_service: { internal_port: 8080, auto_stop_machines: 'sleep' } }, /http_service\.auto_stop_machines: Invalid enum value\. Expected 'off' \| 'stop' \| 'suspend', received 'sleep'/],
    ['auto_start_machines a string', { services: [{ internal_port: 1, ports: [{ port: 1 }], auto_start_machines: 'yes' }] }, /services\.0\.auto_start_machines: Expected boolean, received string/],
    ['min_machines_running negative', { http_service: { internal_port: 8080, min_machines_running: -1 } }, /http_service\.min_machines_running: Number must be greater than or equal to 0/],
    ['soft_limit over hard_limit', { http_service: { internal_port: 8080, concurrency: { soft_limit: 30, hard_limit: 25 } } }, /http_service\.concurrency\.soft_limit: soft_limit must not exceed hard_limit/],
    ['a check interval that is no duration', { http_service: { internal_port: 8080, checks: [{ interval: 'often' }] } }, /http_service\.checks\.0\.interval: /],
    ['a port out of range', { services: [{ internal_port: 5432, ports: [{ port: 70000 }] }] }, /services\.0\.ports\.0\.port: Number must be less than or equal to 65535/],
    ['ports not an array', { services: [{ internal_port: 5432, ports: 5432 }] }, /services\.0\.ports: Expected array, received number/],
    ['services as one table', { services: { internal_port: 1 } }, /services: must be an array of tables \(\[\[services\]\]\), not a table/],
    ['http_service as a string', { http_service: 'yes' }, /http_service: must be a table, not a string/],
    ['primary_region of the wrong type', { primary_region: 7 }, /primary_region: must be a string, not a number \(7\)/],
    ['primary_region not a region code', { primary_region: 'Amsterdam' }, /primary_region: must be a 3-letter region code/],
    ['a missing internal_port', { http_service: {} }, /http_service\.internal_port: Required/],
  ];
  it.each(bad)('refuses %s, naming the key', (_what, doc, message) => {
    let err: unknown = null;
    try {
      readFlyToml(doc);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as Error).message).toMatch(message);
  });
});
