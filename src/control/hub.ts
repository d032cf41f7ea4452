/**
 * The live side of the admin listener: this node's status document, its 1-second series and
 * its event feed, and the server-sent event streams that carry them.
 *
 * `/v1/status/events` (the dashboard) gets `status` frames (~100 ms after catalog changes,
 * and every 2 s), a `points` frame after every sample (the new point of every series, in the
 * shape of /v1/status/series) and a `feed` frame per event. `/v1/events` (the CLI's
 * `--follow`, scripts) gets the feed events matching its filter, each with its sequence
 * number as the SSE id so a reconnect resumes where it stopped.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../observe/log.js';
import type { RunningRole } from '../role.js';
import { gauge } from '../observe/metrics.js';
import { EventFeed, FeedWatcher, matchesFilter, type FeedEvent, type FeedFilter } from './events.js';
import { LiveSampler } from './sampler.js';
import { buildSeries, type SeriesDoc, type SeriesQuery } from './series-doc.js';
import { buildStatus, latestRates, readActive, type NodeStatus, type StatusSource } from './status.js';

/** How often rates are pushed to open dashboards. */
export const TICK_MS = 2_000;
/** View changes are batched this long before a push, so a deploy of 50 machines is one push. */
export const DEBOUNCE_MS = 100;
/** A comment line this often keeps idle event streams open through proxies, and finds dead readers. */
const HEARTBEAT_MS = 15_000;
/** Unsent bytes after which an event stream's reader is taken to be gone. */
const MAX_BUFFERED = 4 * 1024 * 1024;

const streamsGauge = gauge({ name: 'sixpn_dashboard_streams', help: 'Open /v1/status/events and /v1/events streams.' });

interface ServerLike {
  listening: boolean;
}

interface Client {
  /** The server it came in on: when that stops listening, the stream ends. */
  server: ServerLike | undefined;
  /** Feed-only stream with its filter; null for a dashboard stream (status, points, feed). */
  filter: FeedFilter | null;
}

export interface HubSource extends StatusSource {
  /** The proxy role of this node, when it runs one (started before control): its ejections feed the events. */
  proxy(): RunningRole | undefined;
  /** The catalog guard's state changes: pushed to dashboards at once. */
  catalogEvents?: { on(event: 'state', fn: () => void): unknown };
  /** Where the hub says that sampling failed, and when it works again. */
  log?: Logger;
}

const SSE_HEADERS = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-store',
  'x-accel-buffering': 'no',
  'x-content-type-options': 'nosniff',
};

const frame = (event: string, data: unknown, id?: number): string => `${id === undefined ? '' : `id: ${id}\n`}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;

export class StatusHub {
  readonly sampler: LiveSampler;
  readonly feed = new EventFeed();
  private readonly watcher: FeedWatcher;
  private readonly clients = new Map<ServerResponse, Client>();
  private tick: NodeJS.Timeout | null = null;
  private watch: NodeJS.Timeout | null = null;
  private heartbeat: NodeJS.Timeout | null = null;
  private debounce: NodeJS.Timeout | null = null;
  /** Time of the newest point sent to dashboards. */
  private pointsSent = 0;

  constructor(private readonly src: HubSource) {
    this.sampler = new LiveSampler(src.view);
    this.watcher = new FeedWatcher(src.view, this.feed, this.sampler, src.proxy);
    src.view.on('change', () => this.schedule());
    src.view.on('reset', () => this.schedule());
    src.catalogEvents?.on('state', () => this.schedule());
    this.sampler.on('tick', () => this.pushPoints());
    this.sampler.on('failed', (err: unknown) => src.log?.warn({ err }, 'dashboard sampling failed; rates stay unknown until it works again'));
    this.sampler.on('recovered', () => src.log?.info({}, 'dashboard sampling works again'));
    this.feed.subscribe((e) => this.pushFeed(e));
    this.sampler.start();
  }

  /** Rates come from the sampler's newest point; active connections are read fresh. */
  async status(): Promise<NodeStatus> {
    return buildStatus(this.src, { ...latestRates(this.sampler), ...(await readActive()) });
  }

  series(q: SeriesQuery): SeriesDoc {
    return buildSeries({ sampler: this.sampler, view: this.src.view, regions: this.src.regions, node: this.src.node }, q);
  }

  private dashboards(): ServerResponse[] {
    return [...this.clients].filter(([, c]) => c.filter === null).map(([res]) => res);
  }

  private write(res: ServerResponse, text: string): void {
    // A client that stopped reading (a phone asleep) must not grow our memory: cut it;
    // EventSource reconnects when it wakes up.
    if (res.writableLength > MAX_BUFFERED) res.destroy();
    else res.write(text);
  }

  private schedule(): void {
    if (this.debounce || this.clients.size === 0) return;
    this.debounce = setTimeout(() => {
      this.debounce = null;
      this.pushStatus();
    }, DEBOUNCE_MS);
    this.debounce.unref();
  }

  private pushStatus(): void {
    const to = this.dashboards();
    if (to.length === 0) return;
    // A rejection here would be unhandled and end the process: say it and keep serving.
    this.status().then(
      (s) => {
        const text = frame('status', s);
        for (const res of to) this.write(res, text);
      },
      (err: unknown) => this.src.log?.warn({ err }, 'could not build the status frame for dashboards'),
    );
  }

  private pushPoints(): void {
    const to = this.dashboards();
    const since = this.pointsSent;
    this.pointsSent = this.sampler.store.lastTime;
    if (to.length === 0) return;
    const text = frame('points', this.series({ since }));
    for (const res of to) this.write(res, text);
  }

  private pushFeed(e: FeedEvent): void {
    for (const [res, c] of this.clients) if (c.filter === null || matchesFilter(e, c.filter)) this.write(res, frame('feed', e, e.seq));
  }

  /** The dashboard's stream: the status now, then status, points and feed frames. */
  async streamStatus(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const first = await this.status();
    if (res.destroyed) return;
    res.writeHead(200, SSE_HEADERS);
    res.write(`retry: 2000\n${frame('status', first)}`);
    this.register(req, res, null);
  }

  /** A feed stream: the replayed events first (what the follower missed, or the recent ones), then new ones. */
  streamEvents(req: IncomingMessage, res: ServerResponse, filter: FeedFilter, replay: FeedEvent[]): void {
    res.writeHead(200, SSE_HEADERS);
    res.write(`retry: 2000\n${replay.map((e) => frame('feed', e, e.seq)).join('')}`);
    this.register(req, res, filter);
  }

  private register(req: IncomingMessage, res: ServerResponse, filter: FeedFilter | null): void {
    // The control server may close without ending long-lived responses: notice it stopped
    // listening and end its streams, so shutdown is not held up by an open dashboard.
    this.clients.set(res, { server: (req.socket as unknown as { server?: ServerLike }).server, filter });
    streamsGauge.set(this.clients.size);
    if (!this.watch) {
      this.watch = setInterval(() => {
        for (const [r, c] of this.clients) if (c.server && !c.server.listening) r.end();
      }, 250);
      this.watch.unref();
    }
    this.tick ??= setInterval(() => this.pushStatus(), TICK_MS);
    this.tick.unref();
    this.heartbeat ??= setInterval(() => {
      for (const r of this.clients.keys()) this.write(r, ': keep-alive\n\n');
    }, HEARTBEAT_MS);
    this.heartbeat.unref();
    const drop = (): void => {
      this.clients.delete(res);
      streamsGauge.set(this.clients.size);
      if (this.clients.size === 0) this.stopTimers();
    };
    req.on('close', drop);
    res.on('close', drop);
  }

  private stopTimers(): void {
    for (const t of [this.tick, this.watch, this.heartbeat]) if (t) clearInterval(t);
    this.tick = this.watch = this.heartbeat = null;
  }

  close(): void {
    this.stopTimers();
    if (this.debounce) clearTimeout(this.debounce);
    this.debounce = null;
    this.watcher.close();
    this.sampler.close();
    for (const res of [...this.clients.keys()]) res.end();
    this.clients.clear();
    streamsGauge.set(0);
  }
}
