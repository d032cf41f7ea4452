/**
 * fly.toml's two service shapes read into catalog services: `[http_service]` (one HTTP service on
 * port 80) and `[[services]]`, each with the autostop/autostart keys, concurrency and checks,
 * and `primary_region` at the top. Pure: the CLI (`apps create --services fly.toml`) and the
 * control API (`PUT /v1/apps/:app/services` with a fly.toml-shaped body) share it.
 *
 * Keys sixpn does not do are never dropped silently: each one is named in a warning (with why,
 * for the common ones). A value of the wrong type is a ValidationError naming the key as it is
 * written in fly.toml (`http_service.concurrency.soft_limit: Expected number, received string`).
 *
 *   const { services, primary_region, warnings } = readFlyToml(parseToml(text));
 */
import { ValidationError } from '../errors.js';
import { regionCodeSchema, serviceSchema, type Service } from './types.js';

export interface FlyTomlServices {
  services: Service[];
  primary_region?: string;
  /** One line per key that was read but is not used (`http_service.force_https: ...`). */
  warnings: string[];
}

/** What a known key that sixpn ignores is about, for the warning. */
const WHY: Record<string, string> = {
  force_https: 'HTTPS redirects belong to a public edge; Flycast is private and passes HTTP as it is',
  processes: 'process groups are not modelled: the service applies to every machine of the app',
  tls_options: 'the proxy does not terminate TLS (a "tls" port is passed through to the machine)',
  http_options: 'response header rules and HTTP/2 settings of the public edge are not done',
  start_port: 'port ranges are not done: list each port',
  end_port: 'port ranges are not done: list each port',
  kill_signal: 'set per machine: machines run --kill-signal',
  kill_timeout: 'set per machine: machines run --kill-timeout',
  tls_server_name: 'checks do not speak TLS with SNI',
};
const DEPLOY = 'deployment and build settings are not sixpn\'s (machines are run with `sixpn machines run`)';
for (const k of ['build', 'deploy', 'env', 'vm', 'mounts', 'statics', 'metrics', 'experimental', 'restart', 'files', 'console_command', 'swap_size_mb', 'checks', 'http_checks']) WHY[k] ??= DEPLOY;

const AUTO = ['auto_stop_machines', 'auto_start_machines', 'min_machines_running'];
const CONCURRENCY = ['type', 'soft_limit', 'hard_limit'];
const HTTP_CHECK = ['grace_period', 'interval', 'timeout', 'method', 'path', 'protocol', 'headers', 'port', 'tls_skip_verify'];
const TCP_CHECK = ['grace_period', 'interval', 'timeout', 'port'];

type Obj = Record<string, unknown>;
const isTable = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Reads one fly.toml table: the known keys are kept, every other one is warned about. */
function pick(v: unknown, path: string, known: readonly string[], warnings: string[]): Obj {
  if (!isTable(v)) throw new ValidationError(`invalid fly.toml: ${path || '(top level)'}: must be a table, not ${describe(v)}`);
  const out: Obj = {};
  for (const [k, val] of Object.entries(v)) {
    if (known.includes(k)) out[k] = val;
    else warnings.push(`${path ? `${path}.` : ''}${k}: not used by sixpn (ignored)${WHY[k] ? `: ${WHY[k]}` : ''}`);
  }
  return out;
}

/** An array of tables (`[[x]]`), each read with `pick`. */
function pickAll(v: unknown, path: string, known: readonly string[], warnings: string[]): Obj[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw new ValidationError(`invalid fly.toml: ${path}: must be an array of tables ([[${path}]]), not ${describe(v)}`);
  return v.map((x, i) => pick(x, `${path}.${i}`, known, warnings));
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'a table' : `a ${typeof v} (${JSON.stringify(v)})`;
}

/** Validates a service built from fly.toml; errors name keys as fly.toml writes them. */
function check(service: Obj, path: string, rename: Record<string, string> = {}): Service {
  const r = serviceSchema.safeParse(service);
  if (r.success) return r.data;
  const detail = r.error.issues
    .map((i) => {
      const [head, ...rest] = i.path.map(String);
      const key = [path, head === undefined ? [] : [rename[head] ?? head], ...rest].flat().join('.');
      return `${key}: ${i.message}`;
    })
    .join('; ');
  throw new ValidationError(`invalid fly.toml: ${detail}`);
}

function concurrency(v: unknown, path: string, warnings: string[]): Obj | undefined {
  return v === undefined ? undefined : pick(v, path, CONCURRENCY, warnings);
}

function withOptional(out: Obj, src: Obj, keys: readonly string[]): Obj {
  for (const k of keys) if (src[k] !== undefined) out[k] = src[k];
  return out;
}

/**
 * Reads a parsed fly.toml (or its JSON, as `fly config show` prints it). `appName`: the app
 * being written, so that a different `app = ...` in the file is pointed out.
 */
export function readFlyToml(doc: unknown, appName?: string): FlyTomlServices {
  const warnings: string[] = [];
  if (!isTable(doc)) throw new ValidationError(`invalid fly.toml: must be a table of settings, not ${describe(doc)}`);
  const top = pick(doc, '', ['app', 'primary_region', 'http_service', 'services'], warnings);
  if (top.app !== undefined && typeof top.app !== 'string') throw new ValidationError(`invalid fly.toml: app: must be a string, not ${describe(top.app)}`);
  if (appName !== undefined && top.app !== undefined && top.app !== appName) warnings.push(`app: fly.toml names app ${JSON.stringify(top.app)}; its services are written to app ${appName}`);
  let primary: string | undefined;
  if (top.primary_region !== undefined) {
    const r = regionCodeSchema.safeParse(top.primary_region);
    if (!r.success) throw new ValidationError(`invalid fly.toml: primary_region: ${typeof top.primary_region === 'string' ? r.error.issues[0]!.message : `must be a string, not ${describe(top.primary_region)}`}`);
    primary = r.data;
  }
  const services: Service[] = [];
  if (top.http_service !== undefined) {
    const h = pick(top.http_service, 'http_service', ['internal_port', ...AUTO, 'concurrency', 'checks'], warnings);
    const checks = pickAll(h.checks, 'http_service.checks', HTTP_CHECK, warnings);
    const conc = concurrency(h.concurrency, 'http_service.concurrency', warnings);
    // Flycast serves an http_service on port 80; the public edge's 443 (TLS) is not Flycast's.
    const svc = withOptional({ protocol: 'http', internal_port: h.internal_port, ports: [{ port: 80, handlers: ['http'] }], http_checks: checks, ...(conc ? { concurrency: conc } : {}) }, h, AUTO);
    services.push(check(svc, 'http_service', { http_checks: 'checks' }));
  }
  pickAll(top.services, 'services', ['protocol', 'internal_port', ...AUTO, 'ports', 'concurrency', 'tcp_checks', 'http_checks'], warnings).forEach((s, i) => {
    const path = `services.${i}`;
    const ports = Array.isArray(s.ports)
      ? s.ports.map((p, j) => {
          const port = pick(p, `${path}.ports.${j}`, ['port', 'handlers', 'proxy_proto_options'], warnings);
          if (port.proxy_proto_options !== undefined) port.proxy_proto_options = pick(port.proxy_proto_options, `${path}.ports.${j}.proxy_proto_options`, ['version'], warnings);
          return port;
        })
      : s.ports;
    const conc = concurrency(s.concurrency, `${path}.concurrency`, warnings);
    const svc = withOptional(
      {
        ...(s.protocol !== undefined ? { protocol: s.protocol } : {}),
        internal_port: s.internal_port,
        ports,
        tcp_checks: pickAll(s.tcp_checks, `${path}.tcp_checks`, TCP_CHECK, warnings),
        http_checks: pickAll(s.http_checks, `${path}.http_checks`, HTTP_CHECK, warnings),
        ...(conc ? { concurrency: conc } : {}),
      },
      s,
      AUTO,
    );
    services.push(check(svc, path));
  });
  if (top.http_service === undefined && top.services === undefined) warnings.push('fly.toml has neither [http_service] nor [[services]]: the app gets no services (nothing for Flycast to serve)');
  return { services, ...(primary !== undefined ? { primary_region: primary } : {}), warnings };
}

/** True for a value in fly.toml's shape (a table), false for a plain JSON array of catalog services. */
export function isFlyTomlShaped(v: unknown): boolean {
  return isTable(v);
}
