/**
 * The host role (`[host] enabled`): this server registers in the catalog as a host and runs the
 * machines placed on it.
 *
 *   registration  name, region, a 32-bit host id unique in the catalog (configured, kept from the
 *                 catalog or the state folder, else allocated), the agent's session, and the
 *                 host's WireGuard public key (its private key stays in `<state_dir>/wireguard.json`,
 *                 0600) with the endpoint other hosts will dial (the mesh)
 *   heartbeat     every `heartbeat_interval`, only while this session still owns the host: an
 *                 agent replaced by another one stops writing and stops managing machines
 *   machines      ./supervisor.ts, with the netns (./netns.ts) or local (./driver.ts) driver
 *   isolation     the nftables filter's drop counters, read every heartbeat: counted per org and
 *                 logged once a minute per machine, like the gateway's
 *   logs          ./logs.ts, served by the control API of the same node
 *
 * A second agent under a live host's name is refused; an agent of the same boot whose process is
 * gone (killed, crashed) is taken over at once.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { formatHostId, parseHostId } from '../addressing/index.js';
import { nameSchema, type Host } from '../catalog/types.js';
import { ConfigError, ConflictError, NotFoundError } from '../errors.js';
import { loadOrCreateGatewayKeys } from '../gateway/keys.js';
import { DropLog } from '../observe/drops.js';
import { counter, gauge } from '../observe/metrics.js';
import type { NodeContext, RunningRole } from '../role.js';
import { LocalDriver, type Driver } from './driver.js';
import { counterName, OTHER_COUNTER } from './firewall.js';
import { LogHub, type LogFilter, type LogLine } from './logs.js';
import { NetnsDriver } from './netns.js';
import { alive, readText } from './process.js';
import { Supervisor } from './supervisor.js';

export type { LogLine, LogFilter } from './logs.js';

export interface HostRole extends RunningRole {
  readonly name: 'host';
  readonly hostName: string;
  /** The last lines of an app's machines on this host, oldest first. */
  recentLogs(filter: LogFilter, limit: number): LogLine[];
  /** New lines as they come, until the returned function is called. */
  followLogs(filter: LogFilter, onLine: (l: LogLine) => void): () => void;
}

const droppedCounter = counter({
  name: 'sixpn_host_dropped_packets_total',
  help: 'Packets from machines on this host dropped by the isolation filter (forged source, another org), by the machine org',
  labelNames: ['org'] as const,
});
const machinesGauge = gauge({ name: 'sixpn_host_machines', help: 'Machines placed on this host, by state', labelNames: ['state'] as const });

function bootId(): string {
  return readText('/proc/sys/kernel/random/boot_id')?.trim() || 'unknown-boot';
}

/** An earlier agent of this boot whose process is gone may be replaced without waiting for its heartbeat to age. */
function replaceable(session: string, boot: string): boolean {
  const [b, pid] = session.split('/');
  return b === boot && pid !== undefined && /^\d+$/.test(pid) && Number(pid) !== process.pid && !alive(Number(pid));
}

export async function startHostRole(ctx: NodeContext): Promise<HostRole> {
  const cfg = ctx.config.host;
  const log = ctx.log.child({ module: 'host' });
  const hostName = cfg.name || ctx.config.node.name;
  if (!nameSchema.safeParse(hostName).success) {
    throw new ConfigError(`host.name: ${JSON.stringify(hostName)} (from ${cfg.name ? 'host.name' : 'node.name'}) must be 1-63 lowercase letters, digits or dashes; set [host] name`);
  }
  const region = cfg.region || ctx.config.node.region;
  if (!ctx.regions.has(region)) throw new ConfigError(`host.region: unknown region ${region}`);
  const configuredId = cfg.host_id ? parseHostId(cfg.host_id)! : undefined;

  mkdirSync(cfg.state_dir, { recursive: true, mode: 0o700 });
  const keys = await loadOrCreateGatewayKeys(join(cfg.state_dir, 'wireguard.json'), 'host.state_dir');
  const idFile = join(cfg.state_dir, 'host-id');
  const rememberedText = readText(idFile)?.trim();
  const remembered = rememberedText ? parseHostId(rememberedText) : null;

  const driver: Driver = cfg.driver === 'netns' ? new NetnsDriver(cfg, log) : new LocalDriver();
  const view = ctx.view;
  const existing = view.hosts.get(hostName);
  const initialNets = [...view.machinesOnHost(hostName)].flatMap((m) => {
    const org = view.orgs.get(view.apps.get(m.app)?.org ?? '');
    return org ? [{ id: m.id, address: m.address, networkId: org.network_id }] : [];
  });
  await driver.init(initialNets);
  if (cfg.driver === 'local') {
    log.warn(
      { driver: 'local' },
      'LOCAL DRIVER: machines run as plain processes of this user on 127.0.0.1 ports, with NO network isolation between them or from this host. For laptops and demos; use driver = "netns" on a server.',
    );
  }

  const boot = bootId();
  const session = `${boot}/${process.pid}`;
  const gatewayHostId = parseHostId(ctx.config.wireguard.host_id);
  const reserved = [parseHostId(ctx.config.node.host_id), gatewayHostId].filter((x): x is number => x !== null);
  const register = (): Promise<Host> => {
    const known = view.hosts.get(hostName);
    const hostId = configuredId ?? (known ? undefined : remembered ?? undefined);
    return ctx.store.registerHost(
      {
        name: hostName,
        region,
        ...(hostId !== undefined ? { host_id: hostId } : {}),
        driver: cfg.driver,
        session,
        wireguard: {
          public_key: keys.public_key,
          ...(cfg.wireguard_endpoint ? { endpoint: cfg.wireguard_endpoint } : {}),
          // A gateway on this host: the mesh routes its laptops' addresses here.
          ...(ctx.config.wireguard.enabled && gatewayHostId !== null ? { gateway_host_id: gatewayHostId } : {}),
        },
      },
      { reservedHostIds: reserved, staleAfterMs: cfg.heartbeat_timeout, ...(known && replaceable(known.session, boot) ? { replaceSession: known.session } : {}) },
    );
  };
  let host: Host;
  try {
    host = await register();
  } catch (err) {
    await driver.close();
    throw err;
  }
  if (existing && existing.session !== session) log.info({ previous: existing.session }, 'took over the host from an earlier agent');
  writeFileSync(idFile, `${formatHostId(host.host_id)}\n`, { mode: 0o600 });

  const logs = new LogHub(cfg.log_max_bytes);
  const supervisor = new Supervisor({ hostName, cfg, store: ctx.store, view, driver, logs, log, workdir: cfg.workdir || process.cwd() });
  await supervisor.start(existing !== undefined);

  machinesGauge.reset();
  const countStates = (): void => {
    machinesGauge.reset();
    for (const m of view.machinesOnHost(hostName)) machinesGauge.inc({ state: m.state });
  };

  let fenced = false;
  let closing = false;
  const drops = new DropLog<{ machine: string; app: string; org: string }>(droppedCounter, log, 'dropped packets from a machine: forged source or outside its org');
  let beating = false;
  const beat = async (): Promise<void> => {
    if (closing || fenced || beating) return;
    beating = true;
    try {
      await ctx.store.updateHost(hostName, { heartbeat_at: Date.now() }, { ifSession: session });
    } catch (err) {
      if (err instanceof ConflictError) {
        // Another agent owns this host now: it runs the machines; this one must not touch them.
        fenced = true;
        log.error({ err: err.message }, 'another agent took over this host: no longer managing its machines');
        await supervisor.close(false).catch(() => undefined);
      } else if (err instanceof NotFoundError) {
        log.error({}, 'this host is gone from the catalog; registering it again');
        await register().catch((e: unknown) => log.error({ err: e }, 'registering the host again failed'));
      } else {
        log.warn({ err: (err as Error).message }, 'heartbeat failed; retrying');
      }
    } finally {
      beating = false;
    }
    countStates();
    const counters = await driver.drops().catch(() => null);
    if (counters) {
      const who = new Map<string, { machine: string; app: string; org: string }>();
      for (const m of view.machinesOnHost(hostName)) who.set(counterName(m.id), { machine: m.id, app: m.app, org: view.apps.get(m.app)?.org ?? 'unknown' });
      drops.account(counters, (name) => (name === OTHER_COUNTER ? { machine: 'unknown', app: 'unknown', org: 'unknown' } : who.get(name)));
    }
  };
  const timer = setInterval(() => void beat(), cfg.heartbeat_interval);
  timer.unref();
  countStates();
  log.info({ host: hostName, region, host_id: formatHostId(host.host_id), driver: cfg.driver, session }, 'host registered');

  const dirsOf = (filter: LogFilter): string[] =>
    supervisor.machineDirs((id) => {
      if (filter.machine !== undefined && id !== filter.machine) return false;
      const m = view.machines.get(id);
      return m === undefined || m.app === filter.app;
    });

  return {
    name: 'host',
    hostName,
    recentLogs: (filter, limit) => logs.recent(filter, dirsOf(filter), limit),
    followLogs: (filter, onLine) => logs.follow(filter, onLine),
    describe() {
      const n = [...view.machinesOnHost(hostName)].length;
      return [`host: ${hostName} in ${region}, host id ${formatHostId(host.host_id)}, driver ${driver.describe()}, ${n} machine${n === 1 ? '' : 's'}`];
    },
    async close() {
      if (closing) return;
      closing = true;
      clearInterval(timer);
      if (!fenced) await supervisor.close();
      if (!fenced) await ctx.store.updateHost(hostName, { state: 'down' }, { ifSession: session }).catch((err: unknown) => log.warn({ err: (err as Error).message }, 'could not mark the host down'));
      await driver.close();
      log.info({ host: hostName }, 'host agent stopped');
    },
  };
}
