/**
 * Who may read the admin listener's observability routes, and which requests it answers at all.
 *
 * The admin token (`[control] token` / SIXPN_TOKEN) opens everything. A browser cannot send a
 * bearer header from a link or an EventSource, so `/dashboard?token=...` swaps the token for a
 * dashboard session: a token of its own (`sixpn_dash_...`, ./tokens.ts) kept in a cookie,
 * HttpOnly so page scripts never see it, SameSite=Strict so other sites cannot ride on it, good
 * only for the read-only status routes (never for /v1), expiring after `[control]
 * dashboard_session`, and revocable without touching the admin token: logging out revokes it,
 * and so do `sixpn tokens revoke ID` and `sixpn tokens revoke --all-sessions`.
 *
 * A listener on loopback answers only requests addressed to a loopback name (Host header): a
 * page on another site whose name an attacker re-binds to 127.0.0.1 (DNS rebinding) sends its
 * own name and is refused, so it cannot read /metrics, which a loopback listener serves
 * without a token.
 */
import type { IncomingMessage } from 'node:http';
import { isLoopbackHost } from '../addressing/index.js';
import type { CatalogStore } from '../catalog/store.js';
import { checkToken, issueToken, secretEquals } from './tokens.js';

export const DASHBOARD_COOKIE = 'sixpn_dashboard';

export function bearerToken(req: IncomingMessage): string | null {
  const h = req.headers.authorization;
  if (!h) return null;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(h);
  return m ? m[1]! : null;
}

export function cookieValue(req: IncomingMessage, name: string): string | null {
  const header = req.headers.cookie;
  if (!header) return null;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return null;
}

export interface Access {
  /** The configured admin token; empty means nobody is admitted (the control API refuses to start too). */
  token: string;
  /** Where dashboard sessions are kept. */
  store: CatalogStore;
  /** How long a dashboard session lasts (ms). */
  sessionMs: number;
}

/** Full admin token in `Authorization: Bearer`. */
export function hasToken(req: IncomingMessage, access: Access): boolean {
  if (!access.token) return false;
  const given = bearerToken(req);
  return given !== null && secretEquals(given, access.token);
}

/** Bearer token, or the cookie of a live dashboard session: enough to read status. */
export async function mayReadStatus(req: IncomingMessage, access: Access): Promise<boolean> {
  if (!access.token) return false;
  if (hasToken(req, access)) return true;
  const cookie = cookieValue(req, DASHBOARD_COOKIE);
  return cookie !== null && typeof (await checkToken(access.store, cookie, 'dashboard')) !== 'string';
}

/** Opens a dashboard session for someone who showed the admin token; returns its Set-Cookie. */
export async function openSession(req: IncomingMessage, access: Access): Promise<string> {
  const from = (req.socket.remoteAddress ?? 'unknown').replace(/[^\x21-\x7e]/g, '?');
  const now = Date.now();
  const { token, record } = issueToken('dashboard', [], `dashboard session from ${from}`, now + access.sessionMs, now);
  await access.store.createToken(record);
  return `${DASHBOARD_COOKIE}=${token}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${Math.floor(access.sessionMs / 1000)}`;
}

/** Ends the session the request's cookie holds, if it is one: the cookie stops working everywhere. */
export async function closeSession(req: IncomingMessage, access: Access): Promise<void> {
  const cookie = cookieValue(req, DASHBOARD_COOKIE);
  if (cookie === null) return;
  const r = await checkToken(access.store, cookie, 'dashboard');
  if (typeof r !== 'string') await access.store.revokeToken(r.id).catch(() => undefined);
}

export const CLEAR_COOKIE = `${DASHBOARD_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0`;

/** Loopback listeners serve /metrics without a token (only local processes can reach them). */
export { isLoopbackHost };

/** The host name of a Host header (`name`, `name:port`, `[v6]:port`), lowercase, or null when there is none. */
function hostName(header: string | undefined): string | null {
  if (header === undefined || header === '') return null;
  const h = header.trim().toLowerCase();
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    return end < 0 ? h : h.slice(1, end);
  }
  const colon = h.indexOf(':');
  return colon < 0 ? h : h.slice(0, colon);
}

/**
 * Null when a listener on loopback may answer this request, else why not: its Host must be a
 * loopback address, `localhost` or a `*.localhost` name (browsers keep those on this machine),
 * or one of `[control] allowed_hosts`. A request without a Host header (not a browser) passes.
 */
export function hostProblem(req: IncomingMessage, allowed: readonly string[]): string | null {
  const name = hostName(req.headers.host);
  if (name === null || isLoopbackHost(name) || name.endsWith('.localhost') || allowed.includes(name)) return null;
  return `Host ${JSON.stringify(req.headers.host)} is not a loopback name: this admin listener is on loopback and answers only requests addressed to it (a DNS-rebinding guard); a proxy in front that keeps its own Host needs that name in [control] allowed_hosts`;
}
