/**
 * `sixpn status --app APP [--json] [--watch]` and `sixpn events [--app APP] [--follow]`:
 * what flyctl's `fly status` shows (the app, its addresses, a machines table), from the
 * node's /v1/status, and the node's event feed (/v1/events), followed live over server-sent
 * events. The feed is where machine log lines will come too (kind `log`).
 */
import type { FeedEvent } from '../../control/events.js';
import type { AppStatus, MachineStatus, NodeStatus } from '../../control/status.js';
import { NotFoundError } from '../../errors.js';
import { API_OPTIONS, need, type Command, type CommandContext } from '../args.js';
import type { ApiClient } from '../client.js';
import { ago, json, renderTable } from '../output.js';

function findApp(s: NodeStatus, name: string): AppStatus {
  for (const o of s.orgs) for (const a of o.apps) if (a.name === name) return a;
  throw new NotFoundError(`app ${name} not found`);
}

const machinesOf = (a: AppStatus): MachineStatus[] => a.regions.flatMap((r) => r.machines);

/** flyctl's "2 total, 2 passing"; the catalog holds the checker's verdict, not each check. */
export function checksText(m: MachineStatus): string {
  const { total, status } = m.checks;
  if (total === 0) return '-';
  if (status === 'passing') return `${total} total, ${total} passing`;
  if (status === 'critical') return total === 1 ? '1 total, 1 critical' : `${total} total, critical`;
  return `${total} total, pending`;
}

/** The `sixpn status` text for one app. */
export function renderAppStatus(a: AppStatus, now = Date.now()): string {
  const ms = machinesOf(a);
  const field = (k: string, v: string): string => `  ${k.padEnd(8)} = ${v}\n`;
  let out = 'App\n';
  out += field('Name', a.name);
  out += field('Owner', a.org);
  out += field('Hostname', `${a.name}.internal`);
  out += field('Services', a.services.length ? a.services.join(', ') : '-');
  out += field('Flycast', a.flycast.length ? a.flycast.map((f) => (f.org === a.org ? f.address : `${f.address} (org ${f.org})`)).join(', ') : '-');
  out += '\nMachines\n';
  if (ms.length === 0) return `${out}No machines. Register one with: sixpn machines register --app ${a.name} --region REGION\n`;
  out += renderTable(
    ['ID', 'REGION', 'STATE', 'HEALTH CHECKS', 'HOST', 'UPDATED'],
    ms.map((m) => [m.id, m.region, m.state, checksText(m), m.host ?? '-', ago(Math.max(m.updated_at, m.health.changed_at), now)]),
  );
  const failing = ms.filter((m) => m.checks.total > 0 && m.checks.status === 'critical');
  if (failing.length) out += `\nFailing checks\n${failing.map((m) => `  ${m.id} (${m.region}): ${m.health.reason || 'unhealthy'}, since ${ago(m.health.changed_at, now)}\n`).join('')}`;
  return out;
}

/** The app with its machines flat, for --json. */
function appJson(a: AppStatus): unknown {
  const { regions: _regions, ...rest } = a;
  void _regions;
  return { ...rest, machines: machinesOf(a) };
}

const CLEAR = '\x1b[H\x1b[2J';

/** What a reader of a pipe wants to see again: the catalog facts, not the clock or the traffic. */
function changeKey(a: AppStatus): string {
  const ms = machinesOf(a).map((m) => [m.id, m.region, m.state, m.health.status, m.health.reason, m.host, m.checks.status]);
  return JSON.stringify([a.services, a.flycast, ms]);
}

async function watchStatus(ctx: CommandContext, client: ApiClient, app: string): Promise<number> {
  const tty = process.stdout.isTTY === true;
  let shown = '';
  let connected = false;
  for (;;) {
    let failure: unknown = null;
    await client
      .stream('/v1/status/events', (e) => {
        if (e.event !== 'status') return;
        connected = true;
        const a = findApp(JSON.parse(e.data) as NodeStatus, app);
        const text = ctx.values.json ? JSON.stringify(appJson(a)) + '\n' : renderAppStatus(a);
        // A terminal is redrawn in place at every update (~2 s); a pipe gets each change once.
        const key = changeKey(a);
        if (tty) ctx.io.out(`${CLEAR}${text}`);
        else if (key !== shown) ctx.io.out(shown === '' || ctx.values.json ? text : `\n${text}`);
        shown = key;
      })
      .catch((err: unknown) => {
        failure = err;
      });
    if (failure && (!connected || failure instanceof NotFoundError)) throw failure;
    ctx.io.err('connection to the control API lost; reconnecting\n');
    await new Promise((r) => setTimeout(r, 1000));
  }
}

/** One line per event, like `fly logs`: time, kind and level, where, what. */
export function renderEvent(e: FeedEvent): string {
  const where = e.machine ? ` ${e.app ?? '?'}[${e.machine}]${e.region ? ` ${e.region}` : ''}` : e.app ? ` ${e.app}` : e.org ? ` org ${e.org}` : '';
  return `${new Date(e.at).toISOString()} ${e.kind}${where} [${e.level}] ${e.message}\n`;
}

function eventsQuery(ctx: CommandContext): URLSearchParams {
  const q = new URLSearchParams();
  for (const key of ['app', 'org', 'kind'] as const) {
    const v = ctx.values[key];
    if (v) q.set(key, v);
  }
  return q;
}

async function followEvents(ctx: CommandContext, client: ApiClient): Promise<number> {
  const q = eventsQuery(ctx);
  q.set('follow', '1');
  q.set('limit', '20');
  let lastId: string | undefined;
  let connected = false;
  for (;;) {
    let failure: unknown = null;
    await client
      .stream(
        `/v1/events?${q}`,
        (e) => {
          if (e.event !== 'feed') return;
          connected = true;
          if (e.id !== undefined) lastId = e.id;
          ctx.io.out(ctx.values.json ? `${e.data}\n` : renderEvent(JSON.parse(e.data) as FeedEvent));
        },
        { lastEventId: lastId },
      )
      .then(() => {
        connected = true;
      })
      .catch((err: unknown) => {
        failure = err;
      });
    if (failure && !connected) throw failure;
    // The stream ended (the node restarted or the network dropped): pick up after the last event seen.
    ctx.io.err('event stream ended; reconnecting\n');
    await new Promise((r) => setTimeout(r, 1000));
  }
}

export const statusCommands: Command[] = [
  {
    words: ['status'],
    usage: 'sixpn status --app APP [--json] [--watch]',
    summary: 'Show an app: its Flycast addresses and a machines table (--watch: live)',
    options: [...API_OPTIONS, 'app', 'json', 'watch'],
    maxArgs: 0,
    async run(ctx) {
      const app = need(ctx.values, 'app', 'sixpn status');
      const client = await ctx.client();
      if (ctx.values.watch) return watchStatus(ctx, client, app);
      const a = findApp(await client.call<NodeStatus>('GET', '/v1/status'), app);
      ctx.io.out(ctx.values.json ? json(appJson(a)) : renderAppStatus(a));
    },
  },
  {
    words: ['events'],
    usage: 'sixpn events [--app APP] [--org ORG] [--kind health,machine,ejection,catalog,denied,store] [--follow] [--json]',
    summary: 'Show what happened on the node: health transitions, stops and starts, ejections, catalog changes, denied callers (--follow: live)',
    options: [...API_OPTIONS, 'app', 'org', 'kind', 'follow', 'json'],
    maxArgs: 0,
    async run(ctx) {
      const client = await ctx.client();
      if (ctx.values.follow) return followEvents(ctx, client);
      const q = eventsQuery(ctx);
      const r = await client.call<{ events: FeedEvent[] }>('GET', `/v1/events${q.size ? `?${q}` : ''}`);
      if (ctx.values.json) ctx.io.out(json(r.events));
      else ctx.io.out(r.events.length ? r.events.map(renderEvent).join('') : 'No events yet.\n');
    },
  },
];
