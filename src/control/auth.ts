/**
 * Who may read the admin listener's observability routes.
 *
 * The admin token (`[control] token` / SIXPN_TOKEN) opens everything. A browser cannot send a
 * bearer header from a link or an EventSource, so `/dashboard?token=...` swaps the token for a
 * cookie that holds a value derived from it (HMAC): HttpOnly so page scripts never see it,
 * SameSite=Strict so other sites cannot ride on it, and good only for the read-only status
 * routes — never for /v1 mutations, so a leaked cookie is not the admin token.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

export const DASHBOARD_COOKIE = 'sixpn_dashboard';

const digest = (s: string): Buffer => createHash('sha256').update(s).digest();

/** Compares secrets in constant time (hashing first so lengths never leak either). */
export function secretEquals(given: string, expected: string): boolean {
  return timingSafeEqual(digest(given), digest(expected));
}

/** The cookie value that grants dashboard reads; it changes when the token changes. */
export function dashboardGrant(token: string): string {
  return createHmac('sha256', token).update('sixpn dashboard read-only grant v1').digest('base64url');
}

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
}

/** Full admin token in `Authorization: Bearer`. */
export function hasToken(req: IncomingMessage, access: Access): boolean {
  if (!access.token) return false;
  const given = bearerToken(req);
  return given !== null && secretEquals(given, access.token);
}

/** Bearer token or the dashboard cookie: enough to read status. */
export function mayReadStatus(req: IncomingMessage, access: Access): boolean {
  if (!access.token) return false;
  if (hasToken(req, access)) return true;
  const cookie = cookieValue(req, DASHBOARD_COOKIE);
  return cookie !== null && secretEquals(cookie, dashboardGrant(access.token));
}

export function grantCookie(token: string): string {
  return `${DASHBOARD_COOKIE}=${dashboardGrant(token)}; Path=/; HttpOnly; SameSite=Strict; Max-Age=43200`;
}

export const CLEAR_COOKIE = `${DASHBOARD_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0`;

/** Loopback listeners serve /metrics without a token (only local processes can reach them). */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase();
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h) || /^::ffff:127\./.test(h);
}
