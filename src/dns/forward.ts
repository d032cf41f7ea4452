/**
 * Forwarding of names outside .internal/.flycast to the configured upstream resolvers.
 *
 * Queries keep their bytes; only the id is swapped for a random one of ours while the query is
 * at the upstream (two clients may use the same id) and restored in the answer. An answer is
 * taken only from the upstream asked, with our id and the same question. Each upstream
 * gets `timeout` ms; then the next one is tried; when all fail the caller answers SERVFAIL.
 * UDP answers with TC set are passed on as they are, so the client retries over TCP, and TCP
 * queries are forwarded over TCP.
 */
import { randomInt } from 'node:crypto';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { isIPv6 } from 'node:net';
import { connect } from 'node:net';
import type { Logger } from '../observe/log.js';
import type { UpstreamResolver } from './config.js';
import { dnsForwardErrors } from './metrics.js';

interface Pending {
  upstream: UpstreamResolver;
  clientId: number;
  /** The query's question section: an answer must repeat it (RFC 5452). */
  question: Buffer;
  resolve: (answer: Buffer) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

/** The largest DNS message over TCP (two-byte length prefix). */
const MAX_TCP_MESSAGE = 65_535;

export class UpstreamError extends Error {}

export class Forwarder {
  private readonly pending = new Map<number, Pending>();
  private readonly sockets = new Map<'udp4' | 'udp6', UdpSocket>();
  private closed = false;

  constructor(
    readonly upstreams: readonly UpstreamResolver[],
    private readonly timeoutMs: number,
    private readonly log: Logger,
  ) {}

  /** Forwards over UDP, trying each upstream in turn; rejects when all failed. */
  async udp(query: Buffer): Promise<Buffer> {
    return this.each((u) => this.udpOnce(query, u));
  }

  /** Forwards over TCP (the client asked over TCP, typically after a truncated UDP answer). */
  async tcp(query: Buffer): Promise<Buffer> {
    return this.each((u) => this.tcpOnce(query, u));
  }

  private async each(attempt: (u: UpstreamResolver) => Promise<Buffer>): Promise<Buffer> {
    let last: unknown;
    for (const u of this.upstreams) {
      if (this.closed) break;
      try {
        return await attempt(u);
      } catch (err) {
        last = err;
        dnsForwardErrors.inc({ reason: err instanceof UpstreamError && err.message.includes('timed out') ? 'timeout' : 'error' });
        this.log.debug({ err, upstream: `${u.host}:${u.port}` }, 'upstream failed');
      }
    }
    throw new UpstreamError(`all upstreams failed${last ? `: ${(last as Error).message}` : ''}`);
  }

  private socket(family: 'udp4' | 'udp6'): UdpSocket {
    let s = this.sockets.get(family);
    if (!s) {
      s = createSocket({ type: family, recvBufferSize: 4 << 20, sendBufferSize: 4 << 20 });
      s.on('message', (msg, rinfo) => this.onAnswer(msg, rinfo.address, rinfo.port));
      s.on('error', (err) => this.log.warn({ err }, 'forwarding socket error'));
      s.unref();
      this.sockets.set(family, s);
    }
    return s;
  }

  private onAnswer(msg: Buffer, address: string, port: number): void {
    if (msg.length < 12) return;
    const id = msg.readUInt16BE(0);
    const p = this.pending.get(id);
    // Only the upstream we asked may answer (a spoofed answer from elsewhere is dropped).
    if (!p || p.upstream.port !== port || !sameHost(p.upstream.host, address)) return;
    if (msg.length < 12 + p.question.length || !msg.subarray(12, 12 + p.question.length).equals(p.question)) return;
    this.pending.delete(id);
    clearTimeout(p.timer);
    msg.writeUInt16BE(p.clientId, 0);
    p.resolve(msg);
  }

  private udpOnce(query: Buffer, u: UpstreamResolver): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      if (this.pending.size >= 60_000) return reject(new UpstreamError('too many queries in flight'));
      let id = randomInt(0, 0x10000);
      while (this.pending.has(id)) id = (id + 1) & 0xffff;
      const out = Buffer.from(query);
      out.writeUInt16BE(id, 0);
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new UpstreamError(`${u.host}:${u.port} timed out after ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      this.pending.set(id, { upstream: u, clientId: query.readUInt16BE(0), question: questionBytes(query), resolve, reject, timer });
      this.socket(isIPv6(u.host) ? 'udp6' : 'udp4').send(out, u.port, u.host, (err) => {
        if (!err) return;
        clearTimeout(timer);
        this.pending.delete(id);
        reject(new UpstreamError(`${u.host}:${u.port}: ${err.message}`));
      });
    });
  }

  private tcpOnce(query: Buffer, u: UpstreamResolver): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const sock = connect({ host: u.host, port: u.port });
      let buf = Buffer.alloc(0);
      const fail = (msg: string): void => {
        sock.destroy();
        reject(new UpstreamError(`${u.host}:${u.port} (tcp): ${msg}`));
      };
      const timer = setTimeout(() => fail(`timed out after ${this.timeoutMs} ms`), this.timeoutMs);
      sock.on('error', (err) => {
        clearTimeout(timer);
        fail(err.message);
      });
      sock.on('connect', () => {
        const len = Buffer.alloc(2);
        len.writeUInt16BE(query.length, 0);
        sock.end(Buffer.concat([len, query]));
      });
      sock.on('data', (chunk: Buffer) => {
        buf = Buffer.concat([buf, chunk]);
        if (buf.length > MAX_TCP_MESSAGE + 2) return fail('answer too long');
        if (buf.length < 2) return;
        const n = buf.readUInt16BE(0);
        if (buf.length < n + 2) return;
        clearTimeout(timer);
        sock.destroy();
        if (n < 12) return reject(new UpstreamError(`${u.host}:${u.port} (tcp): short answer`));
        const answer = Buffer.from(buf.subarray(2, n + 2));
        answer.writeUInt16BE(query.readUInt16BE(0), 0);
        resolve(answer);
      });
      sock.on('end', () => {
        clearTimeout(timer);
        fail('closed before answering');
      });
    });
  }

  close(): void {
    this.closed = true;
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new UpstreamError('resolver closing'));
      this.pending.delete(id);
    }
    for (const s of this.sockets.values()) s.close();
    this.sockets.clear();
  }
}

/** Bytes 12..end of the first question (the responder has already checked that it is well formed). */
function questionBytes(query: Buffer): Buffer {
  let o = 12;
  while (o < query.length && query[o] !== 0) o += query[o]! + 1;
  return Buffer.from(query.subarray(12, Math.min(query.length, o + 5)));
}

function sameHost(configured: string, seen: string): boolean {
  if (configured === seen) return true;
  // An IPv4 upstream answering on a dual-stack socket shows up as ::ffff:a.b.c.d.
  return seen === `::ffff:${configured}` || configured.toLowerCase() === seen.toLowerCase();
}
