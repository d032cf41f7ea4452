/**
 * The Redis catalog store (ioredis). Not built yet: the foundation issue's Redis work fills it.
 */
import type { CatalogStore } from './store.js';

export interface RedisStoreOptions {
  url: string;
  namespace: string;
  regions: Iterable<string>;
  now?: () => number;
}

export const RedisStore = {
  async open(_opts: RedisStoreOptions): Promise<CatalogStore> {
    throw new Error('the Redis store is not built yet');
  },
};
