/**
 * Steering on the HTTP/1 engine: the forwarder hooks (`steer`, `replay`, `replayFailed`) and
 * the steered `pick`, on top of ProxyCore and the pure rules in ./steering.ts.
 *
 * A request's route (`Route`, the forwarder's per-request steering value) names the app and
 * service it goes to (a replay may name another app of the same org), the balancer constraint,
 * how long a replay may wait for room, and where a failed replay falls back to. Requests
 * without a routing header and responses without `fly-replay` never reach this file.
 *
 * @example
 *   const s = new HttpSteering(core, regions);
 *   new Http1Forwarder<ConnInfo, Slot, Route>({
 *     pick: (info, tried, gone, route) => s.pick(info, tried as Set<Slot>, gone, route),
 *     pool: (slot, info, route) => poolOf(slot.machine, route?.service ?? info.target.service),
 *     dial: (slot, info, route) => core.dial(slot, route?.service ?? info.target.service),
 *     steer: s.steer, replay: s.replay, replayFailed: s.replayFailed, ...
 *   }, options);
 */
import type { Slot, Steer } from '../balancer/index.js';
import type { App, Machine, Service } from '../catalog/types.js';
import { ReplayInvalidError, SixpnError, SteerUnavailableError } from '../errors.js';
import type { Acquired, ConnInfo, ProxyCore } from './core.js';
import { Answer, type ReplayState, type ReplayTo } from './http1/forwarder.js';
import type { HeadParser } from './http1/head.js';
import { H } from './http1/tables.js';
import { replaysTotal, steeredTotal } from './metrics.js';
import { fallbackSteer, parseReplay, planReplay, replayFailed, unavailableText, type RegionCodes, type ReplayPlan, type SteeringHeaders, steerFromHeaders } from './steering.js';

/** Where one request goes: the forwarder carries it from `steer`/`replay` to `pick`, `pool` and `dial`. */
export interface Route {
  app: App;
  service: Service;
  steer: Steer;
  /** Forced: a refusal names the constraint (503) instead of the app's usual 502/503. */
  forced: boolean;
  /** A replay's `timeout=`: the longest wait for a machine with room (ms). */
  waitMs: number | null;
  /** The app whose machine asked for this replay (null: the caller's own route). */
  asked: App | null;
  /** A replay with `fallback=`: where it goes back to when it finds no machine. */
  back: { mode: 'force_self' | 'prefer_self'; source: Machine; app: App; service: Service; plan: ReplayPlan } | null;
}

/** The routing header values of a request head (repeated fields joined by ","); allocates only for them. */
export function steeringHeaders(h: HeadParser): SteeringHeaders {
  const out: SteeringHeaders = { preferRegion: null, forceRegion: null, preferInstance: null, forceInstance: null };
  for (let i = 0; i < h.count; i++) {
    let key: keyof SteeringHeaders;
    switch (h.codes[i]) {
      case H.FLY_PREFER_REGION:
        key = 'preferRegion';
        break;
      case H.FLY_FORCE_REGION:
        key = 'forceRegion';
        break;
      case H.FLY_PREFER_INSTANCE_ID:
        key = 'preferInstance';
        break;
      case H.FLY_FORCE_INSTANCE_ID:
        key = 'forceInstance';
        break;
      default:
        continue;
    }
    const v = h.value(i);
    out[key] = out[key] === null ? v : `${out[key]},${v}`;
  }
  return out;
}

function outcomeOf(err: SixpnError): string {
  switch (err.code) {
    case 'SIXPN_REPLAY_LOOP':
      return 'loop';
    case 'SIXPN_REPLAY_BODY_TOO_LARGE':
      return 'body_too_large';
    case 'SIXPN_FORBIDDEN':
      return 'forbidden';
    default:
      return 'invalid';
  }
}

export class HttpSteering {
  constructor(
    private readonly core: ProxyCore,
    private readonly regions: RegionCodes,
    private readonly now: () => number = Date.now,
  ) {}

  /** hooks.steer: the caller's routing headers as a route, or the 400/404 answer. */
  readonly steer = (info: ConnInfo, head: HeadParser, requestId: string): Route | Answer => {
    const app = info.target.app;
    try {
      const steer = steerFromHeaders(steeringHeaders(head), app.name, this.core.view, this.regions);
      steeredTotal.inc({ app: app.name, outcome: 'steered' });
      return { app, service: info.target.service, steer, forced: steer.forceMachine || steer.forceRegions, waitMs: null, asked: null, back: null };
    } catch (err) {
      steeredTotal.inc({ app: app.name, outcome: 'refused' });
      const e = err instanceof SixpnError ? err : new SixpnError('bad routing header', { cause: err });
      this.core.log.info({ app: app.name, caller: info.caller, request_id: requestId, code: e.code, reason: e.message }, 'routing header refused');
      return new Answer(e.status, e.message);
    }
  };

  /** hooks.pick: a normal pick, or one under the route's constraint (a forced one's refusal names it). */
  async pick(info: ConnInfo, tried: Set<Slot>, gone: () => boolean, route: Route | null): Promise<Acquired | Answer> {
    if (route === null) return this.core.acquire(info.target.app.name, info.target.service.concurrency, tried, gone);
    const got = await this.core.acquire(route.app.name, route.service.concurrency, tried, gone, route.steer, route.waitMs);
    if (typeof got !== 'string' || !route.forced) return got;
    // A forced constraint that found nothing: 503 that says which region or machine.
    const e = new SteerUnavailableError(unavailableText(route.steer, route.app.name, got === 'full'));
    this.core.callerFailed('http', e, info);
    return new Answer(e.status, e.message);
  }

  /** hooks.replay: a machine answered with fly-replay. */
  readonly replay = (info: ConnInfo, slot: Slot, response: HeadParser, route: Route | null, state: ReplayState, requestId: string): ReplayTo<Route> | Answer => {
    const app = route?.app ?? info.target.app;
    const service = route?.service ?? info.target.service;
    const machine = slot.machine;
    let plan: ReplayPlan;
    try {
      if (response.replayFields > 1) throw new ReplayInvalidError('fly-replay: given more than once');
      const r = parseReplay(response.value(response.replayField), this.regions);
      plan = planReplay(r, { app, machine, service }, this.core.view, state, this.now());
    } catch (err) {
      const e = err instanceof SixpnError && err.code !== 'SIXPN_INTERNAL' ? err : new ReplayInvalidError(`invalid fly-replay: ${(err as Error).message}`, { cause: err });
      replaysTotal.inc({ app: app.name, outcome: outcomeOf(e) });
      const line = { app: app.name, machine: machine.id, caller: info.caller, request_id: requestId, code: e.code, reason: e.message, replays: state.replays };
      if (e.code === 'SIXPN_FORBIDDEN') this.core.log.warn(line, 'fly-replay to an app of another org refused');
      else this.core.log.warn(line, 'fly-replay not followed');
      return new Answer(e.status, e.message);
    }
    replaysTotal.inc({ app: app.name, outcome: 'replayed' });
    this.core.log.info({ app: app.name, machine: machine.id, to_app: plan.app.name, request_id: requestId, replays: state.replays + 1 }, 'request replayed');
    const forced = plan.steer.forceMachine || plan.steer.forceRegions;
    return {
      steer: {
        app: plan.app,
        service: plan.service,
        steer: plan.steer,
        forced,
        waitMs: plan.timeoutMs,
        asked: app,
        back: plan.fallback !== null ? { mode: plan.fallback, source: machine, app, service, plan } : null,
      },
      header: `fly-replay-src: ${plan.src}\r\n`,
      excludeSource: plan.excludeSource,
    };
  };

  /** hooks.replayFailed: a replay found no machine; with fallback= it goes back to its source. */
  readonly replayFailed = (info: ConnInfo, route: Route, status: number, text: string, requestId: string): ReplayTo<Route> | null => {
    const back = route.back;
    if (back === null) {
      replaysTotal.inc({ app: (route.asked ?? route.app).name, outcome: 'failed' });
      return null;
    }
    replaysTotal.inc({ app: back.app.name, outcome: 'fallback' });
    this.core.log.info({ app: back.app.name, machine: back.source.id, to_app: route.app.name, request_id: requestId, status, reason: text, caller: info.caller }, `replay failed; back to its source (${back.mode})`);
    return {
      steer: { app: back.app, service: back.service, steer: fallbackSteer(back.mode, back.source), forced: back.mode === 'force_self', waitMs: null, asked: back.app, back: null },
      header: `fly-replay-failed: ${replayFailed(back.plan, `${status} ${text}`)}\r\n`,
      excludeSource: false,
    };
  };
}
