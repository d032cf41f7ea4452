/**
 * A real in-process node for the observability tests: config parsed by the real schema, the
 * bundled region table, an embedded store seeded from config, a live view, and an admin HTTP
 * listener on a free loopback port that runs observeRoutes first (as the control role does).
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { MemoryStore } from '../../src/catalog/memory.js';
import { seedCatalog } from '../../src/catalog/seed.js';
import { CatalogView } from '../../src/catalog/view.js';
import { parseConfig } from '../../src/config/index.js';
import { loadRegionTable } from '../../src/regions/load.js';
import { observeRoutes, type ObserveHandler } from '../../src/control/observe.js';
import type { NodeContext } from '../../src/role.js';
import { PACKAGE_CONFIG_DIR } from '../../src/config/index.js';
import { resolve } from 'node:path';

export const TOKEN = 'test-token-0123456789';

export const SEED = {
  orgs: [
    { name: 'demo', network_id: 0x18 },
    { name: 'acme', network_id: 0x2a },
  ],
  apps: [
    { name: 'hello', org: 'demo', services: [{ protocol: 'http', internal_port: 8080, ports: [{ port: 80, handlers: ['http'] }] }] },
    { name: 'echo', org: 'demo', services: [{ protocol: 'tcp', internal_port: 7, ports: [{ port: 7 }] }] },
    { name: 'billing', org: 'acme', services: [] },
  ],
  machines: [
    { id: 'e286d4c2a17d89', app: 'hello', region: 'ewr' },
    { id: '9080e254f03418', app: 'hello', region: 'lhr' },
    { id: '3d8d9e1a7c5e89', app: 'echo', region: 'iad' },
  ],
  ips: [{ app: 'hello' }, { app: 'echo' }],
};

export interface TestNode {
  ctx: NodeContext;
  store: MemoryStore;
  url: string;
  server: Server;
  observe: ObserveHandler;
  close(): Promise<void>;
}

/** `raw` overrides config sections; the listener always binds 127.0.0.1 (config `control.listen` only decides /metrics access). */
export async function startTestNode(raw: Record<string, unknown> = {}): Promise<TestNode> {
  const config = parseConfig({ control: { token: TOKEN, listen: '127.0.0.1:0' }, log: { level: 'silent' }, ...SEED, ...raw }, {});
  const regions = loadRegionTable(resolve(PACKAGE_CONFIG_DIR, 'regions.csv'), {});
  const store = await MemoryStore.open({ regions: regions.codes });
  await seedCatalog(store, { orgs: config.orgs, apps: config.apps, machines: config.machines, ips: config.ips }, 0x0a7b007d);
  const view = await CatalogView.open(store);
  const ctx: NodeContext = { config, baseDir: process.cwd(), store, view, regions, log: pino({ level: 'silent' }), hostId: 0x0a7b007d, roles: new Map() };
  const observe = observeRoutes(ctx);
  const server = createServer((req, res) => {
    if (observe(req, res)) return;
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: { code: 'SIXPN_NOT_FOUND', message: 'not an observe route' } }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    ctx,
    store,
    url: `http://127.0.0.1:${port}`,
    server,
    observe,
    async close() {
      observe.close();
      await new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      });
      view.close();
      await store.close();
    },
  };
}
