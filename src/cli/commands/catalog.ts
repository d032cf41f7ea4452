/**
 * `sixpn orgs|apps|machines|ips ...`: catalog commands in flyctl's words, each one or two
 * control API calls, printing a table (or `--json`).
 */
import { readFileSync } from 'node:fs';
import { parse as parseToml } from 'smol-toml';
import type { App, FlycastIp, Machine, Org, Service } from '../../catalog/types.js';
import { isFlyTomlShaped, readFlyToml } from '../../catalog/flytoml.js';
import { ValidationError } from '../../errors.js';
import { API_OPTIONS, need, type Command, type CommandContext } from '../args.js';
import { seg } from '../client.js';
import { ago, json, renderTable } from '../output.js';

type OrgView = Org & { prefix: string; dns: string };

function print(ctx: CommandContext, value: unknown, table: () => string): void {
  ctx.io.out(ctx.values.json ? json(value) : table());
}

/** A positional argument or an option standing for it (`machines stop ID` or `--id ID`). */
function argOr(ctx: CommandContext, i: number, option: 'id' | 'app' | 'org', what: string, usage: string): string {
  const v = ctx.args[i] ?? ctx.values[option];
  if (v === undefined || v === '') throw new ValidationError(`missing ${what} (usage: ${usage})`);
  return v;
}

function parseNetworkId(text: string): number {
  const n = /^0x[0-9a-f]+$/i.test(text) ? parseInt(text, 16) : /^\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isInteger(n) || n < 1 || n > 0xffff) throw new ValidationError(`--network-id ${text}: must be 1-65535 (decimal or 0x hex)`);
  return n;
}

/**
 * Services from a fly.toml ([http_service] or [[services]], primary_region), its JSON (`fly
 * config show`), or a JSON array of catalog services. Keys sixpn does not use come back as
 * warnings; a wrong type is an error naming the key.
 */
function readServices(file: string, app: string): { services: unknown; primary_region?: string; warnings: string[] } {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ValidationError(`--services ${file}: ${(err as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = file.endsWith('.toml') ? parseToml(text) : (JSON.parse(text) as unknown);
  } catch (err) {
    throw new ValidationError(`--services ${file}: ${(err as Error).message.split('\n')[0]}`);
  }
  if (!isFlyTomlShaped(doc)) return { services: doc, warnings: [] };
  try {
    return readFlyToml(doc, app);
  } catch (err) {
    if (err instanceof ValidationError) throw new ValidationError(`--services ${file}: ${err.message}`);
    throw err;
  }
}

function servicesSummary(services: Service[]): string {
  if (!services.length) return '-';
  return services
    .map((s) => {
      const auto = s.auto_stop_machines && s.auto_stop_machines !== 'off' ? `, auto_stop ${s.auto_stop_machines}${s.min_machines_running ? ` (min ${s.min_machines_running})` : ''}` : '';
      return `${s.protocol} ${s.ports.map((p) => p.port).join(',')}->${s.internal_port}${auto}`;
    })
    .join('; ');
}

const orgRows = (orgs: OrgView[]) => renderTable(['NAME', 'NETWORK ID', 'PREFIX', 'DNS'], orgs.map((o) => [o.name, String(o.network_id), o.prefix, o.dns]));
const appRows = (apps: App[]) => renderTable(['NAME', 'ORG', 'SERVICES'], apps.map((a) => [a.name, a.org, servicesSummary(a.services)]));
const machineRows = (ms: Machine[]) =>
  renderTable(
    ['ID', 'APP', 'REGION', 'HOST', 'STATE', 'HEALTH', 'ADDRESS', 'UPSTREAM', 'UPDATED'],
    ms.map((m) => [m.id, m.app, m.region, m.host ?? '-', m.state, m.health.status, m.address, m.upstream ?? '-', ago(m.updated_at)]),
  );
const ipType = (t: FlycastIp['type']): string => (t === 'private_v6' ? 'private' : t);
const ipRows = (ips: FlycastIp[], withOrg: boolean) =>
  renderTable(
    ['VERSION', 'IP', 'TYPE', 'REGION', 'CREATED AT', ...(withOrg ? ['ORG'] : [])],
    ips.map((ip) => ['v6', ip.address, ipType(ip.type), ip.region, ago(ip.created_at), ...(withOrg ? [ip.org] : [])]),
  );

const J: ['json'] = ['json'];

export const catalogCommands: Command[] = [
  {
    words: ['orgs', 'list'],
    usage: 'sixpn orgs list [--json]',
    summary: 'List organizations with their 6PN prefix',
    options: [...API_OPTIONS, ...J],
    maxArgs: 0,
    async run(ctx) {
      const orgs = await (await ctx.client()).call<OrgView[]>('GET', '/v1/orgs');
      print(ctx, orgs, () => orgRows(orgs));
    },
  },
  {
    words: ['orgs', 'create'],
    usage: 'sixpn orgs create NAME [--network-id N]',
    summary: 'Create an organization (its own fdaa:0:<id>::/48)',
    options: [...API_OPTIONS, ...J, 'network-id'],
    maxArgs: 1,
    async run(ctx) {
      const name = argOr(ctx, 0, 'org', 'org name', this.usage);
      const nid = ctx.values['network-id'];
      const org = await (await ctx.client()).call<OrgView>('POST', '/v1/orgs', { name, ...(nid !== undefined ? { network_id: parseNetworkId(nid) } : {}) });
      print(ctx, org, () => `Created org ${org.name}: network id ${org.network_id}, prefix ${org.prefix}, DNS ${org.dns}\n`);
    },
  },
  {
    words: ['orgs', 'delete'],
    usage: 'sixpn orgs delete NAME',
    summary: 'Delete an organization that has no apps, peers or Flycast IPs left',
    options: API_OPTIONS,
    maxArgs: 1,
    async run(ctx) {
      const name = argOr(ctx, 0, 'org', 'org name', this.usage);
      await (await ctx.client()).call('DELETE', `/v1/orgs/${seg(name)}`);
      ctx.io.out(`Deleted org ${name}\n`);
    },
  },
  {
    words: ['apps', 'list'],
    usage: 'sixpn apps list [--org ORG] [--json]',
    summary: 'List apps',
    options: [...API_OPTIONS, ...J, 'org'],
    maxArgs: 0,
    async run(ctx) {
      const q = ctx.values.org ? `?org=${seg(ctx.values.org)}` : '';
      const apps = await (await ctx.client()).call<App[]>('GET', `/v1/apps${q}`);
      print(ctx, apps, () => appRows(apps));
    },
  },
  {
    words: ['apps', 'create'],
    usage: 'sixpn apps create NAME --org ORG [--services FILE.json|fly.toml]',
    summary: 'Create an app, optionally with services from a fly.toml ([http_service] or [[services]], primary_region) or a JSON array',
    options: [...API_OPTIONS, ...J, 'org', 'services'],
    maxArgs: 1,
    async run(ctx) {
      const name = argOr(ctx, 0, 'app', 'app name', this.usage);
      const org = need(ctx.values, 'org', 'sixpn apps create');
      const read = ctx.values.services !== undefined ? readServices(ctx.values.services, name) : { services: [], warnings: [] };
      for (const w of read.warnings) ctx.io.err(`Warning: ${w}\n`);
      const body = { name, org, services: read.services, ...(read.primary_region !== undefined ? { primary_region: read.primary_region } : {}) };
      const app = await (await ctx.client()).call<App>('POST', '/v1/apps', body);
      print(ctx, app, () => `New app created: ${app.name} (org ${app.org}, services: ${servicesSummary(app.services)})\n`);
    },
  },
  {
    words: ['apps', 'destroy'],
    usage: 'sixpn apps destroy NAME --yes',
    summary: 'Destroy an app with its machines and Flycast IPs',
    options: [...API_OPTIONS, 'yes'],
    maxArgs: 1,
    async run(ctx) {
      const name = argOr(ctx, 0, 'app', 'app name', this.usage);
      if (!ctx.values.yes) throw new ValidationError(`destroying ${name} removes its machines and Flycast IPs; run again with --yes to confirm`);
      await (await ctx.client()).call('DELETE', `/v1/apps/${seg(name)}`);
      ctx.io.out(`Destroyed app ${name}\n`);
    },
  },
  {
    words: ['machines', 'list'],
    usage: 'sixpn machines list --app APP [--json]',
    summary: "List an app's machines with host, state and health",
    options: [...API_OPTIONS, ...J, 'app'],
    maxArgs: 0,
    async run(ctx) {
      const app = need(ctx.values, 'app', 'sixpn machines list');
      const ms = await (await ctx.client()).call<Machine[]>('GET', `/v1/apps/${seg(app)}/machines`);
      print(ctx, ms, () => machineRows(ms));
    },
  },
  {
    words: ['machines', 'register'],
    usage: 'sixpn machines register --app APP --region REGION [--id ID] [--address 6PN] [--upstream HOST:PORT] [--state started|stopped]',
    summary: 'Register a machine (its 6PN address is derived from the node host id and its id)',
    options: [...API_OPTIONS, ...J, 'app', 'region', 'id', 'address', 'upstream', 'state'],
    maxArgs: 0,
    async run(ctx) {
      const v = ctx.values;
      const app = need(v, 'app', 'sixpn machines register');
      const body = {
        region: need(v, 'region', 'sixpn machines register'),
        ...(v.id !== undefined ? { id: v.id } : {}),
        ...(v.address !== undefined ? { address: v.address } : {}),
        ...(v.upstream !== undefined ? { upstream: v.upstream } : {}),
        ...(v.state !== undefined ? { state: v.state } : {}),
      };
      const m = await (await ctx.client()).call<Machine>('POST', `/v1/apps/${seg(app)}/machines`, body);
      print(ctx, m, () => `Registered machine ${m.id} of ${m.app} in ${m.region} at ${m.address} (${m.state})\n`);
    },
  },
  ...(['stop', 'start'] as const).map(
    (verb): Command => ({
      words: ['machines', verb],
      usage: `sixpn machines ${verb} ID [ID...]`,
      summary: verb === 'stop' ? 'Stop machines (a host sends kill_signal, then SIGKILL after kill_timeout); the proxy stops sending them traffic' : 'Start machines again',
      options: [...API_OPTIONS, 'id'],
      maxArgs: 64,
      async run(ctx) {
        const ids = ctx.args.length ? ctx.args : [argOr(ctx, 0, 'id', 'machine id', this.usage)];
        for (const id of ids) {
          const m = await (await ctx.client()).call<Machine>('POST', `/v1/machines/${seg(id)}/${verb}`);
          ctx.io.out(`Machine ${m.id} is ${m.state}\n`);
        }
      },
    }),
  ),
  {
    words: ['machines', 'remove'],
    usage: 'sixpn machines remove ID',
    summary: 'Remove a machine from the catalog (one a host runs is destroyed: see machines destroy)',
    options: [...API_OPTIONS, 'id'],
    maxArgs: 1,
    async run(ctx) {
      const id = argOr(ctx, 0, 'id', 'machine id', this.usage);
      await (await ctx.client()).call('DELETE', `/v1/machines/${seg(id)}`);
      ctx.io.out(`Removed machine ${id}\n`);
    },
  },
  {
    words: ['ips', 'list'],
    usage: 'sixpn ips list --app APP [--json]',
    summary: "List an app's Flycast (private v6) addresses",
    options: [...API_OPTIONS, ...J, 'app'],
    maxArgs: 0,
    async run(ctx) {
      const app = need(ctx.values, 'app', 'sixpn ips list');
      const ips = await (await ctx.client()).call<FlycastIp[]>('GET', `/v1/apps/${seg(app)}/ips`);
      print(ctx, ips, () => ipRows(ips, true));
    },
  },
  {
    words: ['ips', 'allocate-v6'],
    usage: 'sixpn ips allocate-v6 --private --app APP [--org ORG]',
    summary: "Allocate a Flycast address for an app (in ORG's network when given)",
    options: [...API_OPTIONS, ...J, 'app', 'org', 'private'],
    maxArgs: 0,
    async run(ctx) {
      if (!ctx.values.private) throw new ValidationError('sixpn only allocates private (Flycast) addresses: pass --private');
      const app = need(ctx.values, 'app', 'sixpn ips allocate-v6');
      const ip = await (await ctx.client()).call<FlycastIp>('POST', `/v1/apps/${seg(app)}/ips`, {
        type: 'private_v6',
        ...(ctx.values.org !== undefined ? { org: ctx.values.org } : {}),
      });
      print(ctx, ip, () => ipRows([ip], false));
    },
  },
  {
    words: ['ips', 'release'],
    usage: 'sixpn ips release ADDRESS --app APP [--org ORG]',
    summary: 'Release a Flycast address (with --org: only if it belongs to that org)',
    options: [...API_OPTIONS, 'app', 'org', 'address'],
    maxArgs: 1,
    async run(ctx) {
      const address = ctx.args[0] ?? ctx.values.address;
      if (!address) throw new ValidationError(`missing address (usage: ${this.usage})`);
      const app = need(ctx.values, 'app', 'sixpn ips release');
      const q = ctx.values.org !== undefined ? `?org=${seg(ctx.values.org)}` : '';
      await (await ctx.client()).call('DELETE', `/v1/apps/${seg(app)}/ips/${seg(address)}${q}`);
      ctx.io.out(`Released ${address} from app ${app}\n`);
    },
  },
];
