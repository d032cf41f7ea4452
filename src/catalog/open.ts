/**
 * Opens the configured catalog store (the embedded file store by default, Redis when
 * `[catalog] store = "redis"`) behind the node's guard (./guard.ts), which knows which catalog
 * this node serves and keeps its snapshot.
 */
import { existsSync } from 'node:fs';
import { StoreUnavailableError } from '../errors.js';
import type { CatalogConfig } from './config.js';
import { CatalogGuard, noSnapshotToStartFrom } from './guard.js';
import { MemoryStore } from './memory.js';
import type { CatalogBackend } from './store.js';
import type { Logger } from '../observe/log.js';

/** The store alone (tools and tests that need no guard). */
export async function openBackend(config: Readonly<CatalogConfig>, regionCodes: Iterable<string>, log?: Logger, waitForConnection = true): Promise<CatalogBackend> {
  if (config.store === 'redis') {
    const { RedisStore } = await import('./redis.js');
    return RedisStore.open({
      url: config.redis_url,
      namespace: config.namespace,
      regions: regionCodes,
      tlsCa: config.redis_tls_ca || undefined,
      tlsCert: config.redis_tls_cert || undefined,
      tlsKey: config.redis_tls_key || undefined,
      sentinelPassword: config.redis_sentinel_password || undefined,
      waitForConnection,
      ...(log ? { log } : {}),
    });
  }
  return MemoryStore.open({ regions: regionCodes, ...(config.path ? { path: config.path } : {}), ...(log ? { log } : {}) });
}

/** `where` for messages: `redis://host:6379 (namespace sixpn)`, `file /var/lib/sixpn/catalog.json`. */
export async function storeWhere(config: Readonly<CatalogConfig>): Promise<string> {
  if (config.store === 'redis') {
    const { safeUrl } = await import('./redis-link.js');
    return `${safeUrl(config.redis_url)} (namespace ${config.namespace})`;
  }
  return config.path ? `file ${config.path}` : 'in memory';
}

export async function openStore(config: Readonly<CatalogConfig>, regionCodes: Iterable<string>, log: Logger, node: string): Promise<CatalogGuard> {
  const snapshotPath = config.snapshot === 'off' || config.snapshot === '' ? null : config.snapshot;
  let store: CatalogBackend;
  try {
    store = await openBackend(config, regionCodes, log);
  } catch (err) {
    // Redis is unreachable: with a snapshot to serve, open without waiting (the guard decides, and
    // the store keeps connecting); without one the guard's refusal says why.
    if (!(err instanceof StoreUnavailableError) || config.store !== 'redis') throw err;
    if (snapshotPath === null || !existsSync(snapshotPath)) throw noSnapshotToStartFrom(err, snapshotPath);
    store = await openBackend(config, regionCodes, log, false);
  }
  try {
    return await CatalogGuard.open({
      store,
      where: await storeWhere(config),
      node,
      snapshotPath,
      snapshotIntervalMs: config.snapshot_interval,
      checkIntervalMs: config.identity_check_interval,
      log,
    });
  } catch (err) {
    await store.close();
    throw err;
  }
}
