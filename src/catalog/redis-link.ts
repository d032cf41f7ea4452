/**
 * The Redis store's connections: where to connect (a URL with password or ACL user, TLS, or
 * Sentinel), one connection for commands and one subscribed to the change channel, their
 * reconnects, and what every call does while Redis is away (fail at once with
 * StoreUnavailableError naming the URL, never queue, never hang).
 *
 *   redis://[user:password@]host:6379[/db]              plain
 *   rediss://[user:password@]host:6380[/db]             TLS (CA, client cert: [catalog] redis_tls_*)
 *   redis+sentinel://[user:password@]h1:26379,h2:26379/mymaster[/db]
 *                                                       the primary Sentinel names (failover followed)
 *
 * After the subscriber reconnects the link emits `reset` (changes published meanwhile are lost),
 * once commands go through again.
 */
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { Redis, type RedisOptions } from 'ioredis';
import { ConfigError, SixpnError, StoreUnavailableError } from '../errors.js';
import { gauge } from '../observe/metrics.js';

const connected = gauge({
  name: 'sixpn_catalog_redis_connected',
  help: "1 while the catalog store's Redis command connection is ready, else 0.",
});

/** Fast failure while Redis is away; the proxy and DNS keep serving from their CatalogView. */
export const TIMEOUT_MS = 2_000;

export interface RedisConnection {
  /** redis://, rediss:// or redis+sentinel:// (see the file header). */
  url: string;
  /** PEM files for TLS: the CA that signed the server's certificate, and a client certificate and key. */
  tlsCa?: string | undefined;
  tlsCert?: string | undefined;
  tlsKey?: string | undefined;
  /** Password of the Sentinels themselves, when they require one. */
  sentinelPassword?: string | undefined;
}

/** The URL without its password, for messages and logs. */
export function safeUrl(url: string): string {
  return url.replace(/^([a-z+]+:\/\/)([^@/]*)@/i, (_m, scheme: string, auth: string) => {
    const i = auth.indexOf(':');
    return `${scheme}${i < 0 ? '***' : `${auth.slice(0, i)}:***`}@`;
  });
}

const hostPort = (s: string, defaultPort: number): { host: string; port: number } | null => {
  const m = /^(\[[0-9a-f:.]+\]|[^:[\]]+)(?::(\d{1,5}))?$/i.exec(s);
  if (!m) return null;
  const port = m[2] === undefined ? defaultPort : Number(m[2]);
  if (port < 1 || port > 65535) return null;
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port };
};

/**
 * ioredis options for a connection, or a ConfigError naming what is wrong (`catalog.redis_url`,
 * a TLS file that cannot be read).
 */
export function redisClientOptions(c: RedisConnection): RedisOptions {
  const m = /^(redis|rediss|redis\+sentinel):\/\/(?:([^@/]*)@)?([^/?#]*)(?:\/([^?#]*))?$/i.exec(c.url);
  const bad = (why: string) => new ConfigError(`catalog.redis_url: ${safeUrl(c.url)} ${why}`);
  if (!m) throw bad('must look like redis://host:6379, rediss://user:password@host:6380/0 or redis+sentinel://h1:26379,h2:26379/mymaster');
  const scheme = m[1]!.toLowerCase();
  const out: RedisOptions = {};
  if (m[2] !== undefined) {
    const i = m[2].indexOf(':');
    const user = decodeURIComponent(i < 0 ? m[2] : m[2].slice(0, i));
    const password = i < 0 ? '' : decodeURIComponent(m[2].slice(i + 1));
    if (i < 0 && user) out.password = user; // redis://password@host, as redis-cli -u takes it
    else {
      if (user) out.username = user;
      if (password) out.password = password;
    }
  }
  const path = (m[4] ?? '').split('/').filter((p) => p !== '');
  const db = (s: string | undefined): number | undefined => {
    if (s === undefined) return undefined;
    if (!/^\d{1,2}$/.test(s)) throw bad(`names database ${JSON.stringify(s)}: must be a number`);
    return Number(s);
  };
  if (scheme === 'redis+sentinel') {
    const sentinels = m[3]!.split(',').map((h) => hostPort(h, 26379));
    if (!sentinels.length || sentinels.some((s) => s === null)) throw bad('must list the Sentinels as host:port,host:port');
    if (!path[0]) throw bad('must name the primary after the Sentinels: redis+sentinel://h1:26379,h2:26379/mymaster');
    Object.assign(out, { sentinels, name: decodeURIComponent(path[0]), failoverDetector: true });
    const d = db(path[1]);
    if (d !== undefined) out.db = d;
    if (c.sentinelPassword) out.sentinelPassword = c.sentinelPassword;
  } else {
    const hp = hostPort(m[3]!, 6379);
    if (!hp) throw bad('has no usable host:port');
    Object.assign(out, hp);
    if (path.length > 1) throw bad('has a path after the database number');
    const d = db(path[0]);
    if (d !== undefined) out.db = d;
  }
  if (scheme === 'rediss') {
    const file = (key: string, p: string | undefined): Buffer | undefined => {
      if (!p) return undefined;
      try {
        return readFileSync(p);
      } catch (err) {
        throw new ConfigError(`catalog.${key}: cannot read ${p}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
      }
    };
    const ca = file('redis_tls_ca', c.tlsCa);
    const cert = file('redis_tls_cert', c.tlsCert);
    const key = file('redis_tls_key', c.tlsKey);
    // SNI carries host names only (RFC 6066); an IP is checked against the certificate's IP SANs.
    const host = out.host as string | undefined;
    out.tls = { ...(ca ? { ca } : {}), ...(cert ? { cert } : {}), ...(key ? { key } : {}), ...(host && !isIP(host) ? { servername: host } : {}) };
  } else if (c.tlsCa || c.tlsCert || c.tlsKey) {
    throw new ConfigError('catalog.redis_tls_ca: TLS files are set but catalog.redis_url is not rediss://');
  }
  return out;
}

export interface LinkEvents {
  message: [string];
  /** The subscriber came back after a gap: changes may have been missed. */
  reset: [];
}

export interface LinkLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

/** The two connections of a Redis store, with the fail-fast behaviour of the store while Redis is away. */
export class RedisLink extends EventEmitter<LinkEvents> {
  readonly cmd: Redis;
  readonly sub: Redis;
  readonly url: string;
  private lastError = '';
  private up = false;
  private closed = false;
  /** Set once the link was ready to report: a later subscription means a gap. */
  private started = false;

  constructor(
    conn: RedisConnection,
    private readonly channel: string,
    name: string,
    private readonly log?: LinkLog,
  ) {
    super();
    this.url = safeUrl(conn.url);
    const target = redisClientOptions(conn);
    const common: RedisOptions = {
      ...target,
      lazyConnect: true,
      connectTimeout: TIMEOUT_MS,
      commandTimeout: TIMEOUT_MS,
      // Fail what is queued at once when the connection drops, and refuse new commands while
      // it is down: callers get StoreUnavailableError now, not a hang.
      maxRetriesPerRequest: 0,
      enableOfflineQueue: false,
      autoResendUnfulfilledCommands: false,
      autoResubscribe: false,
      retryStrategy: (times: number) => Math.min(50 * times, 1_000),
      sentinelRetryStrategy: (times: number) => Math.min(50 * times, 1_000),
    };
    this.cmd = new Redis({ ...common, connectionName: `sixpn-catalog-${name}` });
    this.sub = new Redis({ ...common, connectionName: `sixpn-catalog-sub-${name}` });
    // Without 'error' listeners ioredis would report each failed reconnect as unhandled.
    this.cmd.on('error', (err: Error) => (this.lastError = err.message));
    this.sub.on('error', (err: Error) => (this.lastError = err.message));
    this.cmd.on('ready', () => this.setUp(true));
    // ioredis may give a connection up for good ('end', e.g. after a Sentinel answered with an
    // address that then refused): a catalog store must keep trying, so start it over.
    for (const c of [this.cmd, this.sub]) {
      c.on('end', () => {
        if (this.closed || !this.started) return;
        this.log?.warn({ url: this.url }, 'catalog store redis connection ended; connecting again');
        setTimeout(() => {
          if (!this.closed && c.status === 'end') c.connect().catch(() => undefined);
        }, 500).unref();
      });
    }
    this.cmd.on('close', () => this.setUp(false));
    this.sub.on('message', (ch: string, text: string) => {
      if (ch === this.channel) this.emit('message', text);
    });
    this.sub.on('ready', () => {
      if (this.started) void this.resubscribe();
    });
  }

  /**
   * Connects both connections and subscribes. With `wait`, fails with StoreUnavailableError when
   * Redis cannot be reached; without, returns at once and keeps trying in the background (a node
   * started from its snapshot), emitting `reset` once it is through.
   */
  async connect(wait: boolean): Promise<void> {
    if (!wait) {
      this.started = true;
      this.cmd.connect().catch(() => undefined);
      this.sub.connect().catch(() => undefined);
      return;
    }
    try {
      await Promise.all([this.cmd.connect(), this.sub.connect()]);
      await this.sub.subscribe(this.channel);
      this.started = true;
    } catch (err) {
      this.drop(this.cmd);
      this.drop(this.sub);
      // The connection's own error (WRONGPASS, a certificate problem) says more than "Connection is closed".
      throw new StoreUnavailableError(`cannot reach the catalog store at ${this.url}: ${this.lastError || (err as Error).message}`, { cause: err });
    }
  }

  get ready(): boolean {
    return this.cmd.status === 'ready';
  }

  private setUp(up: boolean): void {
    connected.set(up ? 1 : 0);
    if (up === this.up) return;
    this.up = up;
    if (this.closed) return;
    if (up) this.log?.info({ url: this.url }, 'catalog store redis connected');
    else this.log?.warn({ url: this.url, err: this.lastError }, 'catalog store redis connection lost; reconnecting');
  }

  /** Changes published while the subscriber was away are lost: the store's listeners must reload. */
  private async resubscribe(): Promise<void> {
    try {
      await this.sub.subscribe(this.channel);
    } catch {
      return; // the next 'ready' tries again
    }
    // Listeners reload a snapshot on reset: only useful once commands go through again.
    if (this.cmd.status !== 'ready') await new Promise((r) => this.cmd.once('ready', r));
    if (!this.closed) this.emit('reset');
  }

  private unavailable(err: unknown): StoreUnavailableError {
    const reason = this.cmd.status === 'ready' ? (err as Error).message : this.lastError || (err as Error).message;
    return new StoreUnavailableError(`catalog store at ${this.url} is unavailable: ${reason}`, { cause: err });
  }

  /** Runs one Redis call, turning every client failure into StoreUnavailableError. */
  async call<T>(fn: () => Promise<T>): Promise<T> {
    if (this.closed) throw new StoreUnavailableError('catalog store is closed');
    if (this.cmd.status !== 'ready') throw this.unavailable(new Error(`connection is ${this.cmd.status}`));
    try {
      return await fn();
    } catch (err) {
      if (err instanceof SixpnError) throw err;
      throw this.unavailable(err);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(
      [this.cmd, this.sub].map(async (c) => {
        if (c.status === 'ready') {
          try {
            await c.quit();
            return;
          } catch {
            // fall through: drop the socket
          }
        }
        this.drop(c);
      }),
    );
  }

  /**
   * Disconnects a client. ioredis detaches its handlers from the socket on disconnect, and a TLS
   * socket may still report the server's alert after that (a refused certificate): without a
   * listener that late error would end the process.
   */
  private drop(c: Redis): void {
    (c as unknown as { stream?: EventEmitter }).stream?.on('error', () => undefined);
    c.disconnect();
  }
}
