/**
 * DNS listeners: one UDP socket and one TCP server per address, all handing messages to one
 * Responder.
 *
 * TCP is where a client can hold resources, so it is bounded three ways: a connection that
 * sends no complete message for `idleMs` is closed (lying length prefixes, half-open floods);
 * at `maxConnections` the least recently active connection is closed to admit the new one (a
 * flood cannot lock out real clients for longer than they stay quiet); and a connection that
 * does not read its answers or queues too many is dropped.
 */
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { createServer, isIPv6, type Server, type Socket } from 'node:net';
import type { Logger } from '../observe/log.js';
import type { Responder } from './responder.js';

const MAX_IN_FLIGHT_PER_CONNECTION = 64;
const MAX_UNREAD_BYTES = 256 * 1024;
const UDP_BUFFER_BYTES = 4 * 1024 * 1024;

/**
 * Replies go back to the address a query came from, always an IP literal: skip the resolver
 * (dns.lookup defers every call to the next tick and re-parses the address).
 */
function literalLookup(address: string, family: unknown, callback: (err: Error | null, address: string, family: number) => void): void {
  callback(null, address, address.includes(':') ? 6 : 4);
}

/** All TCP connections of the role, least recently active first. */
export class TcpConnections {
  private readonly live = new Set<Socket>();
  private readonly timers = new Map<Socket, NodeJS.Timeout>();
  private closing = false;

  constructor(
    private readonly maxConnections: number,
    private readonly idleMs: number,
  ) {}

  get size(): number {
    return this.live.size;
  }

  admit(sock: Socket): void {
    if (this.closing) {
      sock.destroy();
      return;
    }
    if (this.live.size >= this.maxConnections) {
      const oldest = this.live.values().next().value;
      if (oldest) oldest.destroy();
    }
    this.live.add(sock);
    this.timers.set(
      sock,
      setTimeout(() => sock.destroy(), this.idleMs),
    );
    sock.once('close', () => {
      this.live.delete(sock);
      clearTimeout(this.timers.get(sock));
      this.timers.delete(sock);
    });
  }

  /** A complete message arrived: the connection is active again. */
  touch(sock: Socket): void {
    if (!this.live.delete(sock)) return;
    this.live.add(sock);
    this.timers.get(sock)?.refresh();
  }

  /** Closes the connections accepted on one local address (its listener is going away). */
  closeOn(localAddress: string): void {
    for (const s of this.live) if (s.localAddress === localAddress) s.destroy();
  }

  /** Closes every connection and refuses new ones (the role is closing). */
  closeAll(): void {
    this.closing = true;
    for (const s of this.live) s.destroy();
  }
}

export class DnsListener {
  private udp: UdpSocket | null = null;
  private tcp: Server | null = null;
  port = 0;

  constructor(
    readonly address: string,
    private readonly wantedPort: number,
    private readonly responder: Responder,
    private readonly conns: TcpConnections,
    private readonly log: Logger,
  ) {}

  /** Binds UDP then TCP on the same port; rejects (and releases both) when either fails. */
  async start(): Promise<void> {
    // A large receive buffer rides out bursts (timer storms, GC pauses) instead of dropping
    // queries in the kernel; the kernel caps it at net.core.rmem_max.
    const udp = createSocket({
      type: isIPv6(this.address) ? 'udp6' : 'udp4',
      recvBufferSize: UDP_BUFFER_BYTES,
      sendBufferSize: UDP_BUFFER_BYTES,
      lookup: literalLookup,
    });
    this.udp = udp;
    try {
      await new Promise<void>((resolve, reject) => {
        udp.once('error', reject);
        udp.bind({ address: this.address, port: this.wantedPort }, () => {
          udp.off('error', reject);
          resolve();
        });
      });
      this.port = udp.address().port;
      udp.on('error', (err) => this.log.warn({ err, address: this.address }, 'udp socket error'));
      udp.on('message', (msg, rinfo) => this.onUdp(udp, msg, rinfo.address, rinfo.port));
      const tcp = createServer({ noDelay: true }, (sock) => this.onTcp(sock));
      this.tcp = tcp;
      await new Promise<void>((resolve, reject) => {
        tcp.once('error', reject);
        tcp.listen({ host: this.address, port: this.port, ipv6Only: isIPv6(this.address) }, () => {
          tcp.off('error', reject);
          resolve();
        });
      });
      tcp.on('error', (err) => this.log.warn({ err, address: this.address }, 'tcp server error'));
    } catch (err) {
      await this.close();
      throw err;
    }
  }

  private onUdp(udp: UdpSocket, msg: Buffer, address: string, port: number): void {
    // No send callback: a failed send emits 'error' on the socket, logged there. A forwarded
    // answer may come back after the socket closed (shutdown): then there is no one to tell.
    const send = (out: Buffer | null): void => {
      if (!out || this.udp !== udp) return;
      udp.send(out, port, address);
    };
    try {
      const r = this.responder.answer(msg, address, 'udp');
      if (r instanceof Promise) r.then(send, (err: unknown) => this.log.error({ err }, 'dns query failed'));
      else send(r);
    } catch (err) {
      this.log.error({ err }, 'dns query failed');
    }
  }

  private onTcp(sock: Socket): void {
    this.conns.admit(sock);
    sock.on('error', () => sock.destroy());
    const remote = sock.remoteAddress ?? '';
    let buf: Buffer = Buffer.alloc(0);
    let inFlight = 0;
    const reply = (out: Buffer | null): void => {
      inFlight--;
      if (!out || sock.destroyed) return;
      if (sock.writableLength > MAX_UNREAD_BYTES) {
        sock.destroy();
        return;
      }
      const len = Buffer.allocUnsafe(2);
      len.writeUInt16BE(out.length, 0);
      sock.write(Buffer.concat([len, out]));
    };
    sock.on('data', (chunk: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      while (buf.length >= 2) {
        const n = buf.readUInt16BE(0);
        if (buf.length < n + 2) break;
        const msg = buf.subarray(2, n + 2);
        buf = buf.subarray(n + 2);
        this.conns.touch(sock);
        if (++inFlight > MAX_IN_FLIGHT_PER_CONNECTION) {
          sock.destroy();
          return;
        }
        try {
          const r = this.responder.answer(Buffer.from(msg), remote, 'tcp');
          if (r instanceof Promise) r.then(reply, (err: unknown) => this.log.error({ err }, 'dns query failed'));
          else reply(r);
        } catch (err) {
          inFlight--;
          this.log.error({ err }, 'dns query failed');
        }
      }
    });
  }

  /** Stops both sockets; TCP connections accepted here are closed, not waited for. */
  async close(): Promise<void> {
    const udp = this.udp;
    const tcp = this.tcp;
    this.udp = null;
    this.tcp = null;
    const stopped = tcp?.listening ? new Promise<void>((r) => tcp.close(() => r())) : Promise.resolve();
    this.conns.closeOn(this.address);
    if (udp) {
      await new Promise<void>((r) => {
        try {
          udp.close(() => r());
        } catch {
          r(); // never bound
        }
      });
    }
    await stopped;
  }
}
