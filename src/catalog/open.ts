/**
 * Opens the configured catalog store: the embedded file store by default, Redis when
 * `[catalog] store = "redis"`.
 */
import type { CatalogConfig } from './config.js';
import { MemoryStore } from './memory.js';
import type { CatalogStore } from './store.js';
import type { Logger } from '../observe/log.js';

export async function openStore(config: Readonly<CatalogConfig>, regionCodes: Iterable<string>, log?: Logger): Promise<CatalogStore> {
  if (config.store === 'redis') {
    const { RedisStore } = await import('./redis.js');
    return RedisStore.open({ url: config.redis_url, namespace: config.namespace, regions: regionCodes, ...(log ? { log } : {}) });
  }
  return MemoryStore.open({ regions: regionCodes, ...(config.path ? { path: config.path } : {}), ...(log ? { log } : {}) });
}
