/**
 * Opens the configured catalog store: the embedded file store by default, Redis when
 * `[catalog] store = "redis"`.
 */
import type { Config } from '../config/index.js';
import { MemoryStore } from './memory.js';
import type { CatalogStore } from './store.js';
import type { Logger } from '../observe/log.js';

export async function openStore(config: Readonly<Config>, regionCodes: Iterable<string>, log?: Logger): Promise<CatalogStore> {
  if (config.catalog.store === 'redis') {
    const { RedisStore } = await import('./redis.js');
    return RedisStore.open({ url: config.catalog.redis_url, namespace: config.catalog.namespace, regions: regionCodes, ...(log ? { log } : {}) });
  }
  return MemoryStore.open({ regions: regionCodes, ...(config.catalog.path ? { path: config.catalog.path } : {}) });
}
