/**
 * `sixpn hosts list`, `sixpn machines run|restart|destroy` and `sixpn logs`: the commands for
 * machines that hosts run, in flyctl's words.
 */
import { formatHostId } from '../../addressing/index.js';
import type { Machine } from '../../catalog/types.js';
import { ValidationError } from '../../errors.js';
import type { HostView } from '../../control/machines.js';
import type { LogLine } from '../../host/logs.js';
import { API_OPTIONS, need, type Command, type CommandContext } from '../args.js';
import { seg } from '../client.js';
import { ago, json, renderTable } from '../output.js';



function statusText(h: HostView): string {
  return h.status === 'unreachable' ? `unreachable (silent ${Math.round(h.heartbeat_age_ms / 1000)}s)` : h.status;
}

const hostRows = (hs: HostView[]) =>
  renderTable(
    ['NAME', 'REGION', 'HOST ID', 'STATUS', 'DRIVER', 'MACHINES', 'HEARTBEAT', 'WIREGUARD'],
    hs.map((h) => [h.name, h.region, formatHostId(h.host_id), statusText(h), h.driver, String(h.machines), ago(h.heartbeat_at), h.wireguard ? `${h.wireguard.public_key}${h.wireguard.endpoint ? ` ${h.wireguard.endpoint}` : ''}` : '-']),
  );

/** `K=V` pairs of --env; the key is checked by the API (it must be a variable name). */
function parseEnv(pairs: string[] | undefined): Record<string, string> {
  const env: Record<string, string> = {};
  for (const p of pairs ?? []) {
    const i = p.indexOf('=');
    if (i <= 0) throw new ValidationError(`--env ${JSON.stringify(p)}: must be KEY=VALUE`);
    env[p.slice(0, i)] = p.slice(i + 1);
  }
  return env;
}

function machineLine(m: Machine): string {
  const why = m.state_reason ? ` (${m.state_reason})` : '';
  return `Machine ${m.id} is ${m.state}${why}`;
}

/** One log line as flyctl prints it: time, app[machine], region, [stream], message. */
export function formatLogLine(l: LogLine): string {
  const level = l.stream === 'stderr' ? 'err' : l.stream === 'sixpn' ? 'sixpn' : 'info';
  return `${l.timestamp} app[${l.machine}] ${l.region} [${level}] ${l.message}\n`;
}

export const hostCommands: Command[] = [
  {
    words: ['hosts', 'list'],
    usage: 'sixpn hosts list [--json]',
    summary: 'List hosts with region, host id, status (up, down, unreachable) and machine count',
    options: [...API_OPTIONS, 'json'],
    maxArgs: 0,
    async run(ctx) {
      const hosts = await (await ctx.client()).call<HostView[]>('GET', '/v1/hosts');
      ctx.io.out(ctx.values.json ? json(hosts) : hostRows(hosts));
    },
  },
  {
    words: ['machines', 'run'],
    usage: 'sixpn machines run --app APP (--region R | --host H) [--id ID] [--env K=V]... [--restart no|always|on-failure] [--kill-signal SIG] [--kill-timeout 5s] -- CMD ARGS...',
    summary: 'Run a machine: a host of the region (the one with the fewest machines) starts CMD in its own network namespace',
    options: [...API_OPTIONS, 'json', 'app', 'region', 'host', 'id', 'env', 'restart', 'kill-signal', 'kill-timeout'],
    maxArgs: 0,
    takesCommand: true,
    async run(ctx: CommandContext) {
      const v = ctx.values;
      const app = need(v, 'app', 'sixpn machines run');
      if (v.region === undefined && v.host === undefined) throw new ValidationError('sixpn machines run needs --region REGION or --host HOST');
      const cmd = ctx.rest ?? [];
      if (cmd.length === 0) throw new ValidationError('sixpn machines run needs the command after --, e.g. -- /usr/bin/python3 -m http.server 8080');
      const policy = v.restart === 'on-fail' ? 'on-failure' : v.restart;
      const config = {
        cmd,
        env: parseEnv(v.env),
        ...(policy !== undefined ? { restart: { policy } } : {}),
        ...(v['kill-signal'] !== undefined ? { kill_signal: v['kill-signal'].toUpperCase().replace(/^(?!SIG)/, 'SIG') } : {}),
        ...(v['kill-timeout'] !== undefined ? { kill_timeout: /^\d+$/.test(v['kill-timeout']) ? `${v['kill-timeout']}s` : v['kill-timeout'] } : {}),
      };
      const body = { config, ...(v.region !== undefined ? { region: v.region } : {}), ...(v.host !== undefined ? { host: v.host } : {}), ...(v.id !== undefined ? { id: v.id } : {}) };
      const m = await (await ctx.client()).call<Machine>('POST', `/v1/apps/${seg(app)}/machines`, body);
      ctx.io.out(v.json ? json(m) : `Machine ${m.id} of ${m.app} is ${m.state} on host ${m.host} in ${m.region} at ${m.address}${m.upstream ? ` (upstream ${m.upstream})` : ''}\n`);
    },
  },
  {
    words: ['machines', 'restart'],
    usage: 'sixpn machines restart ID [ID...]',
    summary: 'Stop (kill_signal, then SIGKILL after kill_timeout) and start machines that hosts run',
    options: [...API_OPTIONS],
    maxArgs: 64,
    async run(ctx) {
      if (!ctx.args.length) throw new ValidationError(`missing machine id (usage: ${this.usage})`);
      for (const id of ctx.args) ctx.io.out(`${machineLine(await (await ctx.client()).call<Machine>('POST', `/v1/machines/${seg(id)}/restart`))}\n`);
    },
  },
  {
    words: ['machines', 'suspend'],
    usage: 'sixpn machines suspend ID [ID...]',
    summary: 'Freeze machines that hosts run in place (SIGSTOP); `machines start` or Flycast traffic resumes them in milliseconds',
    options: [...API_OPTIONS],
    maxArgs: 64,
    async run(ctx) {
      if (!ctx.args.length) throw new ValidationError(`missing machine id (usage: ${this.usage})`);
      for (const id of ctx.args) ctx.io.out(`${machineLine(await (await ctx.client()).call<Machine>('POST', `/v1/machines/${seg(id)}/suspend`))}
`);
    },
  },
  {
    words: ['machines', 'destroy'],
    usage: 'sixpn machines destroy ID [ID...] [--force]',
    summary: 'Stop machines and remove them with their namespace and address (--force: from the catalog at once, for a host that is gone)',
    options: [...API_OPTIONS, 'force'],
    maxArgs: 64,
    async run(ctx) {
      if (!ctx.args.length) throw new ValidationError(`missing machine id (usage: ${this.usage})`);
      for (const id of ctx.args) {
        await (await ctx.client()).call('DELETE', `/v1/machines/${seg(id)}${ctx.values.force ? '?force=true' : ''}`);
        ctx.io.out(`Machine ${id} is destroyed\n`);
      }
    },
  },
  {
    words: ['logs'],
    usage: 'sixpn logs --app APP [--machine ID] [--follow] [--lines N] [--json]',
    summary: "Show an app's machine output (stdout, stderr and the host's own lines), tagged with machine, region and time",
    options: [...API_OPTIONS, 'json', 'app', 'machine', 'follow', 'lines'],
    maxArgs: 0,
    async run(ctx) {
      const v = ctx.values;
      const app = need(v, 'app', 'sixpn logs');
      if (v.lines !== undefined && !/^\d+$/.test(v.lines)) throw new ValidationError('--lines must be a number');
      const q = new URLSearchParams();
      if (v.machine !== undefined) q.set('machine', v.machine);
      if (v.lines !== undefined) q.set('lines', v.lines);
      const print = (l: LogLine): void => ctx.io.out(v.json ? `${JSON.stringify(l)}\n` : formatLogLine(l));
      const client = await ctx.client();
      if (v.follow) {
        q.set('follow', '1');
        await client.streamLines<LogLine>(`/v1/apps/${seg(app)}/logs?${q}`, print);
        return;
      }
      const lines = await client.call<LogLine[]>('GET', `/v1/apps/${seg(app)}/logs${q.size ? `?${q}` : ''}`);
      for (const l of lines) print(l);
    },
  },
];
