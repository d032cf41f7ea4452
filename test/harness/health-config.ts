/**
 * Node configs for health and failover tests: one TOML text from the sections a test cares
 * about, plus an optional seed of org `acme` (network 0x18) with an HTTP app `web` whose
 * service carries the given checks and whose machines are the test's machine processes.
 */
type Value = string | number | boolean;

export interface HealthNodeOptions {
  region: string;
  /** Sections by name (`health`, `health.passive`, `proxy`, `catalog`, ...): key -> value. */
  sections: Record<string, Record<string, Value>>;
  /** Only the health role: proxy, control, dns and the gateway are turned off. */
  checkerOnly?: boolean;
  seed?: {
    /** TOML inline table of the app's one http check, e.g. `{ interval = "500ms", path = "/health" }`. */
    httpCheck: string;
    machines: { id: string; region: string; host: string }[];
    /** Allocate a Flycast address for the app. */
    flycast?: boolean;
  };
}

const value = (v: Value): string => (typeof v === 'string' ? JSON.stringify(v) : String(v));

export function healthNodeToml(o: HealthNodeOptions): string {
  const sections: Record<string, Record<string, Value>> = {
    node: { name: `node-${o.region}`, region: o.region },
    control: { enabled: false },
    ...(o.checkerOnly ? { proxy: { enabled: false }, dns: { enabled: false }, wireguard: { enabled: false } } : {}),
  };
  for (const [name, keys] of Object.entries(o.sections)) sections[name] = { ...sections[name], ...keys };
  const lines: string[] = [];
  for (const [name, keys] of Object.entries(sections)) {
    lines.push(`[${name}]`, ...Object.entries(keys).map(([k, v]) => `${k} = ${value(v)}`));
  }
  if (o.seed) {
    lines.push(
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
      'concurrency = { type = "requests", soft_limit = 1000, hard_limit = 2000 }',
      `http_checks = [${o.seed.httpCheck}]`,
      ...o.seed.machines.flatMap((m) => ['[[machines]]', `id = "${m.id}"`, 'app = "web"', `region = "${m.region}"`, `address = "${m.host}"`]),
      ...(o.seed.flycast ? ['[[ips]]', 'app = "web"'] : []),
    );
  }
  return `${lines.join('\n')}\n`;
}
