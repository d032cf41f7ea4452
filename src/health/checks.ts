/**
 * Running one check against a machine: a TCP connect, or an HTTP(S) request whose 2xx/3xx
 * status passes. Each run opens its own connection (no keep-alive), so that a machine that
 * stopped accepting is noticed, and is cut off at its timeout. Results carry a short reason
 * ("tcp connect refused", "http 503", "timeout after 300ms") that ends up in the catalog.
 */
import http from 'node:http';
import https from 'node:https';
import { connect } from 'node:net';
import type { HttpCheck } from '../catalog/types.js';
import type { CheckTarget } from './plan.js';

export interface CheckResult {
  ok: boolean;
  reason: string;
}

const USER_AGENT = 'sixpn-health/1';

function errorReason(prefix: string, err: NodeJS.ErrnoException): string {
  switch (err.code) {
    case 'ECONNREFUSED':
      return `${prefix} connect refused`;
    case 'ECONNRESET':
      return `${prefix} connection reset`;
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return `${prefix} unreachable`;
    default:
      return `${prefix} ${err.code ?? err.message}`;
  }
}

/**
 * A check whose definition the runtime refuses (a header with a newline, a path with spaces,
 * an upstream port out of range) fails with the reason instead of throwing out of a timer.
 */
function cannotRun(prefix: string, err: unknown): CheckResult {
  return { ok: false, reason: `${prefix} check cannot run: ${(err as Error).message}` };
}

/** Passes when a TCP connection to `target` is established within `timeoutMs`. */
export function tcpCheck(target: CheckTarget, timeoutMs: number): Promise<CheckResult> {
  return new Promise((resolve) => {
    let sock: ReturnType<typeof connect>;
    try {
      sock = connect({ host: target.host, port: target.port, ...(target.localAddress !== undefined ? { localAddress: target.localAddress } : {}) });
    } catch (err) {
      resolve(cannotRun('tcp', err));
      return;
    }
    const timer = setTimeout(() => done({ ok: false, reason: `tcp connect timeout after ${timeoutMs}ms` }), timeoutMs);
    let settled = false;
    function done(r: CheckResult): void {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      resolve(r);
    }
    sock.once('connect', () => done({ ok: true, reason: 'tcp connect ok' }));
    sock.once('error', (err) => done({ ok: false, reason: errorReason('tcp', err) }));
  });
}

/** Passes when the response status is 2xx or 3xx within `timeoutMs` (connect included). */
export function httpCheck(target: CheckTarget, check: HttpCheck, timeoutMs: number): Promise<CheckResult> {
  return new Promise((resolve) => {
    const mod = check.protocol === 'https' ? https : http;
    const headers: Record<string, string> = { 'user-agent': USER_AGENT, ...lowerKeys(check.headers) };
    let req: http.ClientRequest;
    try {
      req = mod.request({
        host: target.host,
        port: target.port,
        method: check.method,
        path: check.path,
        headers,
        agent: false,
        ...(target.localAddress !== undefined ? { localAddress: target.localAddress } : {}),
        ...(check.protocol === 'https' ? { rejectUnauthorized: !check.tls_skip_verify } : {}),
      });
    } catch (err) {
      resolve(cannotRun(check.protocol, err));
      return;
    }
    const timer = setTimeout(() => done({ ok: false, reason: `http timeout after ${timeoutMs}ms` }), timeoutMs);
    let settled = false;
    function done(r: CheckResult): void {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      resolve(r);
    }
    req.once('response', (res) => {
      const status = res.statusCode ?? 0;
      res.resume();
      done({ ok: status >= 200 && status < 400, reason: `http ${status}` });
    });
    req.once('error', (err: NodeJS.ErrnoException) => done({ ok: false, reason: errorReason(check.protocol, err) }));
    req.end();
  });
}

function lowerKeys(h: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) out[k.toLowerCase()] = v;
  return out;
}
