/**
 * Tokens the control role issues and checks, besides the admin token of `[control] token`:
 *
 * - org tokens, `sixpn_org_<id>_<secret>` (`sixpn tokens create --org ORG`): the /v1 API, for
 *   the orgs the token names only;
 * - dashboard sessions, `sixpn_dash_<id>_<secret>` (the dashboard cookie): the read-only status
 *   routes, for 12 hours or until logged out or revoked.
 *
 * The secret is 32 random bytes; the catalog keeps the SHA-256 of the whole token string under
 * its id, so a stolen catalog holds no usable token, and a token is checked with one store read
 * by id (no scan) and a constant-time comparison of hashes. Revoking one is deleting its record:
 * every API node reads the store per request, so it holds at once everywhere.
 *
 * @example
 *   const { token, record } = issueToken('org', ['acme'], 'ci', Date.now() + DAY);
 *   await store.createToken(record);  // `token` is shown once, never stored
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { CatalogStore } from '../catalog/store.js';
import type { Token, TokenKind } from '../catalog/types.js';
import { UnauthorizedError, ValidationError } from '../errors.js';

/** Who a request acts for: the admin token (everything), or an org token (its orgs only). */
export type Principal = { kind: 'admin' } | { kind: 'org'; id: string; name: string; orgs: ReadonlySet<string> };

export const ADMIN: Principal = { kind: 'admin' };

const PREFIX: Record<TokenKind, string> = { org: 'sixpn_org_', dashboard: 'sixpn_dash_' };
const TOKEN_RE = /^sixpn_(org|dash)_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;

const sha256 = (s: string): Buffer => createHash('sha256').update(s).digest();

/** Compares secrets in constant time (hashing first so lengths never leak either). */
export function secretEquals(given: string, expected: string): boolean {
  return timingSafeEqual(sha256(given), sha256(expected));
}

/** A new token of `kind`: the string to hand out once, and the record to store. */
export function issueToken(kind: TokenKind, orgs: string[], name: string, expiresAt: number, now = Date.now()): { token: string; record: Token } {
  const id = randomBytes(8).toString('hex');
  const token = `${PREFIX[kind]}${id}_${randomBytes(32).toString('base64url')}`;
  return { token, record: { id, kind, name, orgs, hash: sha256(token).toString('hex'), created_at: now, expires_at: expiresAt } };
}

/** The id and kind a token string claims, or null when it is not shaped like one of ours. */
export function parseToken(token: string): { id: string; kind: TokenKind } | null {
  const m = TOKEN_RE.exec(token);
  return m ? { id: m[2]!, kind: m[1] === 'org' ? 'org' : 'dashboard' } : null;
}

/**
 * The stored record of a presented token of `kind`, when the token is genuine and unexpired;
 * otherwise the reason it is not (for the 401 message: it names the token id at most).
 */
export async function checkToken(store: CatalogStore, token: string, kind: TokenKind, now = Date.now()): Promise<Token | string> {
  const claim = parseToken(token);
  if (!claim || claim.kind !== kind) return 'invalid bearer token';
  const record = await store.getToken(claim.id);
  if (!record || record.kind !== kind || !timingSafeEqual(sha256(token), Buffer.from(record.hash, 'hex'))) return 'invalid bearer token';
  if (record.expires_at <= now) return `token ${record.id} expired at ${new Date(record.expires_at).toISOString()}`;
  return record;
}

/** `Authorization: Bearer <token>` to the principal it stands for; 401 for anything else. */
export function authenticator(adminToken: string, store: CatalogStore): (header: string | undefined) => Promise<Principal> {
  return async (header) => {
    const m = header === undefined ? null : /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
    if (!m) throw new UnauthorizedError('missing bearer token (send "Authorization: Bearer <token>")');
    const given = m[1]!;
    if (adminToken !== '' && secretEquals(given, adminToken)) return ADMIN;
    const r = await checkToken(store, given, 'org');
    if (typeof r === 'string') throw new UnauthorizedError(r);
    return { kind: 'org', id: r.id, name: r.name, orgs: new Set(r.orgs) };
  };
}

/** Fly's default for `fly tokens create`: 20 years. */
export const DEFAULT_EXPIRY = '175200h';
const UNIT_MS = { m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const MAX_EXPIRY_MS = 175_200 * UNIT_MS.h;

/** `--expiry` as flyctl writes it: `30d`, `720h`, `90m`; from one minute to 20 years. */
export function parseExpiry(text: string): number {
  const m = /^(\d{1,7})([mhd])$/.exec(text);
  const ms = m ? Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS] : NaN;
  if (!(ms >= UNIT_MS.m && ms <= MAX_EXPIRY_MS)) {
    throw new ValidationError(`invalid token: expiry: ${JSON.stringify(text)} must be a duration like "30d", "720h" or "90m", from 1m to 175200h (20 years)`);
  }
  return ms;
}

/** A token as the API shows it: everything but the hash. */
export function tokenView(t: Token): Omit<Token, 'hash'> {
  const { hash: _hash, ...view } = t;
  return view;
}
