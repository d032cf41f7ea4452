/**
 * A node's local, always-current read view of the catalog.
 *
 * Proxy connections and DNS queries read from here and never wait on the store: the view
 * loads one snapshot, then applies each published change. It subscribes before it reads the
 * snapshot and replays what arrived meanwhile, so no change falls between the two. A `reset`
 * from the store (Redis reconnect) reloads the snapshot. Consumers that keep their own
 * indexes (the balancer) listen to `change`; the emitted change has already been applied.
 */
import { EventEmitter } from 'node:events';
import type { CatalogStore, StoreEvent } from './store.js';
import { peerKey, type App, type CatalogChange, type CatalogSnapshot, type FlycastIp, type Host, type Machine, type NodeEntry, type Org, type Peer } from './types.js';

export interface CatalogViewEvents {
  change: [CatalogChange];
  /** The whole view was replaced (first load or reload after a reset). */
  reset: [];
  error: [Error];
}

export class CatalogView extends EventEmitter<CatalogViewEvents> {
  readonly orgs = new Map<string, Org>();
  readonly orgsByNetworkId = new Map<number, Org>();
  readonly apps = new Map<string, App>();
  readonly machines = new Map<string, Machine>();
  /** app name -> machine id -> machine */
  readonly machinesByApp = new Map<string, Map<string, Machine>>();
  /** Flycast address (normalized) -> ip */
  readonly flycast = new Map<string, FlycastIp>();
  /** `<org>/<name>` -> peer */
  readonly peers = new Map<string, Peer>();
  /** Host agents by name. */
  readonly hosts = new Map<string, Host>();
  /** Node liveness entries by node name (shared stores). */
  readonly nodes = new Map<string, NodeEntry>();
  /** host name -> machine id -> machine (machines run by that host) */
  readonly machinesByHost = new Map<string, Map<string, Machine>>();
  /** Changes applied since the view was opened; dashboards and tests use it to wait. */
  version = 0;
  /** Epoch ms of the last change's origin time: the lag a change took to arrive here. */
  lastChangeLagMs = 0;

  private unsubscribe: (() => void) | null = null;
  private loading: StoreEvent[] | null = null;

  private constructor(private readonly store: CatalogStore) {
    super();
    // Every role of a node follows its one view (proxy, DNS, health, host, mesh, control, their
    // parts): `sixpn up` passes node's default of 10 listeners per event without any leak.
    this.setMaxListeners(64);
  }

  static async open(store: CatalogStore): Promise<CatalogView> {
    const view = new CatalogView(store);
    view.unsubscribe = store.subscribe((e) => view.onEvent(e));
    await view.reload();
    return view;
  }

  private onEvent(e: StoreEvent): void {
    if (this.loading) {
      this.loading.push(e);
      return;
    }
    if (e.kind === 'reset') {
      this.reload().catch((err: Error) => this.emit('error', err));
      return;
    }
    this.apply(e);
  }

  /** Replaces the view with a fresh snapshot, then replays changes that raced it. */
  async reload(): Promise<void> {
    this.loading = [];
    let snap: CatalogSnapshot;
    try {
      snap = await this.store.snapshot();
    } catch (err) {
      this.loading = null;
      throw err;
    }
    this.fill(snap);
    const raced = this.loading;
    this.loading = null;
    this.emit('reset');
    for (const e of raced) if (e.kind !== 'reset') this.apply(e);
    // A reset that came while loading may mean the snapshot read missed changes: read again.
    if (raced.some((e) => e.kind === 'reset')) this.reload().catch((err: Error) => this.emit('error', err));
  }

  private fill(s: CatalogSnapshot): void {
    this.orgs.clear();
    this.orgsByNetworkId.clear();
    this.apps.clear();
    this.machines.clear();
    this.machinesByApp.clear();
    this.flycast.clear();
    this.peers.clear();
    this.hosts.clear();
    this.nodes.clear();
    this.machinesByHost.clear();
    for (const o of s.orgs) this.putOrg(o);
    for (const a of s.apps) this.apps.set(a.name, a);
    for (const m of s.machines) this.putMachine(m);
    for (const f of s.flycast) this.flycast.set(f.address, f);
    for (const p of s.peers) this.peers.set(peerKey(p.org, p.name), p);
    for (const h of s.hosts ?? []) this.hosts.set(h.name, h);
    for (const n of s.nodes ?? []) this.nodes.set(n.name, n);
  }

  private putOrg(o: Org): void {
    const old = this.orgs.get(o.name);
    if (old) this.orgsByNetworkId.delete(old.network_id);
    this.orgs.set(o.name, o);
    this.orgsByNetworkId.set(o.network_id, o);
  }

  private putMachine(m: Machine): void {
    const old = this.machines.get(m.id);
    if (old && old.app !== m.app) this.machinesByApp.get(old.app)?.delete(m.id);
    if (old?.host !== undefined && old.host !== m.host) this.machinesByHost.get(old.host)?.delete(m.id);
    this.machines.set(m.id, m);
    let byId = this.machinesByApp.get(m.app);
    if (!byId) this.machinesByApp.set(m.app, (byId = new Map()));
    byId.set(m.id, m);
    if (m.host !== undefined) {
      let onHost = this.machinesByHost.get(m.host);
      if (!onHost) this.machinesByHost.set(m.host, (onHost = new Map()));
      onHost.set(m.id, m);
    }
  }

  private apply(c: CatalogChange): void {
    if (c.op === 'put') {
      switch (c.kind) {
        case 'org':
          this.putOrg(c.value);
          break;
        case 'app':
          this.apps.set(c.key, c.value);
          break;
        case 'machine':
          this.putMachine(c.value);
          break;
        case 'flycast':
          this.flycast.set(c.key, c.value);
          break;
        case 'peer':
          this.peers.set(c.key, c.value);
          break;
        case 'host':
          this.hosts.set(c.key, c.value);
          break;
        case 'node':
          this.nodes.set(c.key, c.value);
          break;
      }
    } else {
      switch (c.kind) {
        case 'org': {
          const o = this.orgs.get(c.key);
          if (o) this.orgsByNetworkId.delete(o.network_id);
          this.orgs.delete(c.key);
          break;
        }
        case 'app':
          this.apps.delete(c.key);
          break;
        case 'machine': {
          const m = this.machines.get(c.key);
          if (m) this.machinesByApp.get(m.app)?.delete(m.id);
          if (m?.host !== undefined) this.machinesByHost.get(m.host)?.delete(m.id);
          this.machines.delete(c.key);
          break;
        }
        case 'flycast':
          this.flycast.delete(c.key);
          break;
        case 'peer':
          this.peers.delete(c.key);
          break;
        case 'host':
          this.hosts.delete(c.key);
          break;
        case 'node':
          this.nodes.delete(c.key);
          break;
      }
    }
    this.version++;
    this.lastChangeLagMs = Math.max(0, Date.now() - c.at);
    this.emit('change', c);
  }

  /** Machines of an app (empty when unknown). */
  machinesOf(app: string): Iterable<Machine> {
    return this.machinesByApp.get(app)?.values() ?? [];
  }

  /** Machines run by a host (empty when none). */
  machinesOnHost(host: string): Iterable<Machine> {
    return this.machinesByHost.get(host)?.values() ?? [];
  }

  /** The org that owns a network id, if any. */
  orgByNetworkId(id: number | null): Org | undefined {
    return id === null ? undefined : this.orgsByNetworkId.get(id);
  }

  appsOfOrg(org: string): App[] {
    return [...this.apps.values()].filter((a) => a.org === org);
  }

  peersOfOrg(org: string): Peer[] {
    return [...this.peers.values()].filter((p) => p.org === org);
  }

  close(): void {
    this.unsubscribe?.();
    this.unsubscribe = null;
    this.removeAllListeners();
  }
}
