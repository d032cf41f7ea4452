/**
 * Node configs for health and failover tests: one TOML text from the sections a test cares
 * about, plus an optional seed of org `acme` (network 0x18) with an HTTP app `web` whose
 * service carries the given checks and whose machines are the test's machine processes.
 * The catalog tests seed the same org and app on their own (`sectionsToml`, `acmeWebSeedToml`).
 */
type Value = string | number | boolean;

export interface HealthNodeOptions {
  region: string;
  /** Sections by name (`health`, `health.passive`, `proxy`, `catalog`, ...): key -> value. */
  sections: Record<string, Record<string, Value>>;
  /** Only the health role: proxy, control, dns and the gateway are turned off. */
  checkerOnly?: boolean;
  seed?: AcmeWebSeed & {
    /** TOML inline table of the app's one http check, e.g. `{ interval = "500ms", path = "/health" }`. */
    httpCheck: string;
  };
}

export interface AcmeWebSeed {
  machines: { id: string; region: string; host: string }[];
  /** TOML inline table of the service's one http check; none when absent. */
  httpCheck?: string;
  /** TOML inline table of the service's concurrency limits; none when absent. */
  concurrency?: string;
  /** Allocate a Flycast address for the app. */
  flycast?: boolean;
}

/** The limits the health tests' service runs under: far above what any of them sends. */
const HEALTH_CONCURRENCY = '{ type = "requests", soft_limit = 1000, hard_limit = 2000 }';

const value = (v: Value): string => (typeof v === 'string' ? JSON.stringify(v) : String(v));

/** `[name]` tables of `key = value` lines, in the order given, without a trailing newline. */
export function sectionsToml(sections: Record<string, Record<string, Value>>): string {
  const lines: string[] = [];
  for (const [name, keys] of Object.entries(sections)) {
    lines.push(`[${name}]`, ...Object.entries(keys).map(([k, v]) => `${k} = ${value(v)}`));
  }
  return lines.join('\n');
}

/** Org `acme` (network 0x18), its HTTP app `web` on port 80 -> 8080, and the given machines. */
export function acmeWebSeedToml(seed: AcmeWebSeed): string {
  return [
    '[[orgs]]',
    'name = "acme"',
    'network_id = 24',
    '[[apps]]',
    'name = "web"',
    'org = "acme"',
    '[[apps.services]]',
    'protocol = "http"',
    'internal_port = 8080',
    'ports = [{ port = 80, handlers = ["http"] }]',
    ...(seed.concurrency ? [`concurrency = ${seed.concurrency}`] : []),
    ...(seed.httpCheck ? [`http_checks = [${seed.httpCheck}]`] : []),
    ...seed.machines.flatMap((m) => ['[[machines]]', `id = "${m.id}"`, 'app = "web"', `region = "${m.region}"`, `address = "${m.host}"`]),
    ...(seed.flycast ? ['[[ips]]', 'app = "web"'] : []),
  ].join('\n');
}

export function healthNodeToml(o: HealthNodeOptions): string {
  const sections: Record<string, Record<string, Value>> = {
    node: { name: `node-${o.region}`, region: o.region },
    control: { enabled: false },
    ...(o.checkerOnly ? { proxy: { enabled: false }, dns: { enabled: false }, wireguard: { enabled: false } } : {}),
  };
  for (const [name, keys] of Object.entries(o.sections)) sections[name] = { ...sections[name], ...keys };
  const parts = [sectionsToml(sections)];
  if (o.seed) parts.push(acmeWebSeedToml({ concurrency: HEALTH_CONCURRENCY, ...o.seed }));
  return `${parts.join('\n')}\n`;
}
