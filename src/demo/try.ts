/**
 * The "what to try" block `sixpn up` prints for the demo: the dashboard link, a curl through
 * each Flycast development mapping, a dig against the loopback DNS listener, a CLI command.
 * Built from the config and the catalog view only, so what it prints is what is running.
 */
import { relative, resolve } from 'node:path';
import { orgOf } from '../addressing/index.js';
import type { CatalogView } from '../catalog/view.js';
import type { Config } from '../config/index.js';
import { PACKAGE_CONFIG_DIR } from '../config/index.js';
import type { RegionTable } from '../regions/index.js';
import { autoStopOf } from '../autostart/policy.js';

const fmtDuration = (ms: number): string => (ms % 60_000 === 0 ? `${ms / 60_000} min` : ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`);

export interface TryCommand {
  /** Short label: dashboard, curl, tcp, dns, cli, metrics. */
  what: string;
  /** The command or URL to paste. */
  run: string;
  /** What it shows. */
  note: string;
}

const WILDCARD = new Set(['::', '0.0.0.0', '']);

function hostForUrl(host: string): string {
  if (WILDCARD.has(host)) return '127.0.0.1';
  return host.includes(':') ? `[${host}]` : host;
}

/** A file of the package, relative to where the user is, or absolute when far away. */
function packagePath(file: string, cwd: string): string {
  const abs = resolve(PACKAGE_CONFIG_DIR, '..', file);
  const rel = relative(cwd, abs);
  return rel.startsWith('..') ? abs : rel;
}

/** `node dist/cli/main.js`, relative to where the user is, or absolute when far away. */
export function cliCommand(cwd = process.cwd()): string {
  return `node ${packagePath('dist/cli/main.js', cwd)}`;
}

/** The started machine of `app` the proxy on this node prefers: the one nearest `region`. */
function nearestMachine(view: CatalogView, regions: RegionTable, app: string, region: string): { id: string; region: string } | undefined {
  const rank = regions.rankFrom(region);
  return [...view.machinesOf(app)].filter((m) => m.state === 'started').sort((a, b) => (rank.get(a.region) ?? 1e9) - (rank.get(b.region) ?? 1e9))[0];
}

export function tryCommands(config: Readonly<Config>, view: CatalogView, regions: RegionTable, cwd = process.cwd()): TryCommand[] {
  const out: TryCommand[] = [];
  let failover: { app: string; url: string } | null = null;
  const api = `http://${hostForUrl(config.control.listen.host)}:${config.control.listen.port}`;
  if (config.control.enabled && config.control.token) {
    out.push({ what: 'dashboard', run: `${api}/dashboard?token=${encodeURIComponent(config.control.token)}`, note: 'live health dashboard (the link trades the token for a cookie)' });
  }
  if (config.proxy.enabled && config.proxy.mode === 'dev') {
    for (const m of config.proxy.dev_mappings) {
      const ip = view.flycast.get(m.flycast);
      if (!ip) continue;
      const app = view.apps.get(ip.app);
      const isHttp = app?.services.some((s) => s.protocol === 'http' && s.ports.some((p) => p.port === m.port)) ?? false;
      const target = `${hostForUrl(m.listen_host)}:${m.listen_port}`;
      const callerNet = m.as_caller ? orgOf(m.as_caller) : null;
      const callerOrg = callerNet === null ? null : view.orgByNetworkId(callerNet)?.name ?? null;
      const refused = callerOrg !== null && callerOrg !== ip.org;
      const via = `Flycast ${ip.address} port ${m.port}, app ${ip.app}`;
      const scales = app !== undefined && !refused && isHttp && autoStopOf(app).mode !== 'off';
      if (scales) {
        const { mode, minRunning } = autoStopOf(app);
        const idle = fmtDuration(config.autostart.idle_period);
        out.push({ what: 'scale', run: `curl -s http://${target}/`, note: `${via}: scales to zero (auto_stop_machines = "${mode}"${minRunning ? `, min ${minRunning}` : ''}): ${idle} idle and its machine is ${mode === 'suspend' ? 'suspended' : 'stopped'}; this request starts it and is answered` });
      } else if (isHttp) {
        out.push({
          what: refused ? 'refused' : 'curl',
          run: `curl -s http://${target}/`,
          note: refused ? `${via}: refused, the caller is in org ${callerOrg}, the app in org ${ip.org}` : `${via}: the nearest machine says who it is`,
        });
        if (!refused && !failover) failover = { app: ip.app, url: `http://${target}/` };
      } else {
        out.push({ what: refused ? 'refused' : 'tcp', run: `nc ${hostForUrl(m.listen_host)} ${m.listen_port}`, note: `${via}: ${refused ? `refused, other org (${ip.org})` : 'greets, then echoes each line'}` });
      }
    }
  }
  const dnsHost = config.dns.listen.find((h) => h === '127.0.0.1' || h === '::1');
  if (config.dns.enabled && dnsHost && config.dns.loopback_org) {
    out.push({ what: 'dns', run: `dig @${dnsHost} -p ${config.dns.port} +short _apps.internal TXT`, note: `the apps of org ${config.dns.loopback_org}` });
    const firstApp = view.appsOfOrg(config.dns.loopback_org)[0];
    if (firstApp) out.push({ what: 'dns', run: `dig @${dnsHost} -p ${config.dns.port} +short ${firstApp.name}.internal AAAA`, note: `6PN addresses of ${firstApp.name}'s started machines` });
  }
  if (config.control.enabled && config.control.token) {
    const env = `SIXPN_API_URL=${api} SIXPN_TOKEN=${config.control.token}`;
    const app = config.demo.apps[0] ?? view.apps.keys().next().value;
    const cli = `${env} ${cliCommand(cwd)}`;
    if (app) out.push({ what: 'cli', run: `${cli} ips list --app ${app}`, note: `Flycast addresses of ${app} through the admin API` });
    const near = failover ? nearestMachine(view, regions, failover.app, config.node.region) : undefined;
    if (failover && near) {
      out.push({ what: 'failover', run: `${cli} machines stop ${near.id} && curl -s ${failover.url}`, note: `stop the ${near.region} machine: the next nearest region answers (watch the dashboard)` });
      out.push({ what: 'restore', run: `${cli} machines start ${near.id}`, note: `start it again` });
    }
    const runApp = failover?.app ?? app;
    if (config.host.enabled && runApp) {
      const hostName = config.host.name || config.node.name;
      const region = config.host.region || config.node.region;
      const prog = packagePath('dist/demo/machine-main.js', cwd);
      const how = config.host.driver === 'local' ? 'local driver: a process on a loopback port' : 'in its own network namespace';
      out.push({ what: 'run', run: `${cli} machines run --app ${runApp} --region ${region} -- node ${prog}`, note: `host ${hostName} starts a machine of ${runApp} (${how}); the proxy sends it traffic at once` });
      out.push({ what: 'hosts', run: `${cli} hosts list`, note: 'the hosts that run machines, with their host id and heartbeat' });
      out.push({ what: 'logs', run: `${cli} logs --app ${runApp}`, note: 'what the machines hosts run print, tagged with machine, region and time (--follow to stream)' });
    }
    out.push({ what: 'metrics', run: `curl -s ${api}/metrics | grep '^sixpn_'`, note: 'Prometheus metrics' });
  }
  return out;
}

export function formatTry(cmds: TryCommand[]): string[] {
  if (cmds.length === 0) return [];
  const w = Math.max(...cmds.map((c) => c.what.length));
  const lines = ['try:'];
  for (const c of cmds) {
    lines.push(`  ${c.what.padEnd(w)}  ${c.run}`);
    lines.push(`  ${' '.repeat(w)}  # ${c.note}`);
  }
  lines.push(`  ${'stop'.padEnd(w)}  Ctrl-C`);
  return lines;
}
