/**
 * Flycast allocation under contention: 4 control API processes sharing one real redis-server,
 * 200 concurrent `allocate-v6` calls spread over them. Every call must succeed with its own
 * address inside the org's prefix, and every process must then list the same 200.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isFlycastAddress, orgOf } from '../../src/addressing/index.js';
import { startControl, type TestControl } from '../harness/control.js';
import { startRedis, type TestRedis } from '../harness/redis.js';

const PROCESSES = 4;
const CALLS = 200;
const NETWORK_ID = 0x22b7;

let redis: TestRedis;
const apis: TestControl[] = [];

beforeAll(async () => {
  redis = await startRedis();
  const namespace = `alloc-${process.pid}-${Date.now()}`;
  apis.push(...(await Promise.all(Array.from({ length: PROCESSES }, () => startControl({ redisUrl: redis.url, namespace })))));
  expect((await apis[0]!.api('POST', '/v1/orgs', { name: 'acme', network_id: NETWORK_ID })).status).toBe(201);
  expect((await apis[1]!.api('POST', '/v1/apps', { name: 'db', org: 'acme' })).status).toBe(201);
});

afterAll(async () => {
  await Promise.all(apis.map((a) => a.stop()));
  await redis?.stop();
});

describe('allocate-v6 across processes sharing Redis', () => {
  it(`${CALLS} concurrent calls over ${PROCESSES} API processes give ${CALLS} distinct addresses in the org prefix`, async () => {
    const started = Date.now();
    const results = await Promise.all(
      Array.from({ length: CALLS }, (_, i) => apis[i % PROCESSES]!.api('POST', '/v1/apps/db/ips', { type: 'private_v6' })),
    );
    const ms = Date.now() - started;
    const failed = results.filter((r) => r.status !== 201);
    expect(failed.map((r) => JSON.stringify(r.body))).toEqual([]);
    const addresses = results.map((r) => r.body.address as string);
    expect(new Set(addresses).size).toBe(CALLS);
    for (const a of addresses) {
      expect(orgOf(a)).toBe(NETWORK_ID);
      expect(isFlycastAddress(a)).toBe(true);
    }
    // Every process reads the same set back.
    for (const api of apis) {
      const list = await api.api('GET', '/v1/apps/db/ips');
      expect(new Set(list.body.map((ip: { address: string }) => ip.address))).toEqual(new Set(addresses));
    }
    console.log(`allocate-concurrency: ${CALLS} allocations over ${PROCESSES} processes in ${ms} ms`);
  });
});
