/**
 * Seeds a catalog from the inline sections of a config file (orgs, apps, machines, ips).
 *
 * Idempotent, so a node can seed on every start: existing orgs and machines are left alone,
 * an existing app gets the config's services, and Flycast addresses are allocated only until
 * the app holds as many in that org as the config lists.
 */
import { ConflictError } from '../errors.js';
import type { CatalogStore } from './store.js';
import type { App, MachineInput, Org } from './types.js';

export interface Seed {
  orgs: Org[];
  apps: App[];
  machines: MachineInput[];
  ips: { app: string; org?: string | undefined }[];
}

export async function seedCatalog(store: CatalogStore, seed: Seed, hostId: number): Promise<void> {
  const snap = await store.snapshot();
  const orgs = new Map(snap.orgs.map((o) => [o.name, o]));
  for (const o of seed.orgs) {
    const have = orgs.get(o.name);
    if (have && have.network_id !== o.network_id) {
      throw new ConflictError(`seed org ${o.name} has network_id ${o.network_id}, the catalog has ${have.network_id}`);
    }
    if (!have) await store.createOrg(o);
  }
  const apps = new Set(snap.apps.map((a) => a.name));
  for (const a of seed.apps) {
    if (apps.has(a.name)) await store.updateAppServices(a.name, a.services);
    else await store.createApp(a);
  }
  const machines = new Set(snap.machines.map((m) => m.id));
  for (const m of seed.machines) {
    if (m.id !== undefined && machines.has(m.id)) continue;
    await store.registerMachine(m, { hostId });
  }
  const appOrg = new Map([...snap.apps, ...seed.apps].map((a) => [a.name, a.org]));
  const wanted = new Map<string, number>();
  for (const ip of seed.ips) {
    const key = `${ip.app}\n${ip.org ?? appOrg.get(ip.app) ?? ''}`;
    wanted.set(key, (wanted.get(key) ?? 0) + 1);
  }
  for (const [key, count] of wanted) {
    const [app, org] = key.split('\n') as [string, string];
    const have = snap.flycast.filter((f) => f.app === app && f.org === org).length;
    for (let i = have; i < count; i++) await store.allocateFlycast(app, org || undefined);
  }
}
