/**
 * Bearer tokens of the control API against a real embedded store: the admin token, org tokens
 * (only their hash stored), and every way a presented token is refused.
 */
import { beforeEach, describe, expect, it } from 'vitest';
import { MemoryStore } from '../../../src/catalog/memory.js';
import { authenticator, checkToken, issueToken, parseExpiry, parseToken } from '../../../src/control/tokens.js';
import { UnauthorizedError } from '../../../src/errors.js';

const ADMIN = 'admin-token-0123456789';
const HOUR = 3_600_000;
let store: MemoryStore;
let auth: ReturnType<typeof authenticator>;

beforeEach(async () => {
  store = await MemoryStore.open({ regions: ['ewr'] });
  await store.createOrg({ name: 'acme', network_id: 0x18 });
  await store.createOrg({ name: 'globex', network_id: 0x19 });
  auth = authenticator(ADMIN, store);
});

async function refused(header: string | undefined): Promise<string> {
  const err = await auth(header).then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(UnauthorizedError);
  return (err as Error).message;
}

describe('authenticator', () => {
  it('takes the admin token (any case of the scheme) as admin', async () => {
    expect(await auth(`Bearer ${ADMIN}`)).toEqual({ kind: 'admin' });
    expect(await auth(`bearer ${ADMIN}`)).toEqual({ kind: 'admin' });
  });

  it('takes an org token as its orgs, and stores only its hash', async () => {
    const { token, record } = issueToken('org', ['acme', 'globex'], 'ci', Date.now() + HOUR);
    await store.createToken(record);
    const p = await auth(`Bearer ${token}`);
    expect(p).toMatchObject({ kind: 'org', id: record.id, name: 'ci' });
    expect(p.kind === 'org' && [...p.orgs]).toEqual(['acme', 'globex']);
    expect(JSON.stringify(await store.listTokens())).not.toContain(token.slice(-43));
  });

  it.each([undefined, '', 'Bearer', 'Bearer ', `Basic ${ADMIN}`, ADMIN, `Bearer ${ADMIN}x`, `Bearer ${ADMIN} extra`, 'Bearer sixpn_org_0123456789abcdef_' + 'A'.repeat(43)])(
    'refuses %s',
    async (h) => {
      expect(await refused(h)).toMatch(/token/);
    },
  );

  it('refuses a wrong secret for a real id, a revoked token, an expired one (saying so), and a dashboard session', async () => {
    const { token, record } = issueToken('org', ['acme'], 'ci', Date.now() + HOUR);
    await store.createToken(record);
    const forged = token.slice(0, -1) + (token.endsWith('A') ? 'B' : 'A');
    expect(parseToken(forged)?.id).toBe(record.id);
    expect(await refused(`Bearer ${forged}`)).toBe('invalid bearer token');
    const old = issueToken('org', ['acme'], 'old', Date.now() + 50);
    await store.createToken(old.record);
    await new Promise((r) => setTimeout(r, 80));
    expect(await refused(`Bearer ${old.token}`)).toMatch(new RegExp(`^token ${old.record.id} expired at \\d{4}-`));
    const session = issueToken('dashboard', [], 'browser', Date.now() + HOUR);
    await store.createToken(session.record);
    expect(await refused(`Bearer ${session.token}`)).toBe('invalid bearer token');
    expect(await checkToken(store, session.token, 'dashboard')).toMatchObject({ id: session.record.id });
    await store.revokeToken(record.id);
    expect(await refused(`Bearer ${token}`)).toBe('invalid bearer token');
  });

  it('with no admin token configured, an empty or any other bearer is refused', async () => {
    const none = authenticator('', store);
    await expect(none('Bearer ')).rejects.toBeInstanceOf(UnauthorizedError);
    await expect(none('Bearer x')).rejects.toBeInstanceOf(UnauthorizedError);
  });
});

describe('parseExpiry', () => {
  it.each([
    ['30d', 30 * 24 * HOUR],
    ['720h', 720 * HOUR],
    ['90m', 90 * 60_000],
    ['175200h', 175_200 * HOUR],
  ])('%s', (text, ms) => expect(parseExpiry(text)).toBe(ms));
  it.each(['0m', '30s', '1y', '175201h', '-1d', '30 d', '', '1e3h'])('refuses %s', (text) => {
    expect(() => parseExpiry(text)).toThrow(/expiry/);
  });
});
