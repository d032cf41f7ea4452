/**
 * Steering on the HTTP/1 engine: the forwarder hooks (`steer`, `replay`, `replayFailed`) and
 * the steered `pick`, on top of ProxyCore and the pure rules in ./steering.ts.
 *
 * A request's route (`Route`, the forwarder's per-request steering value) names the app and
 * service it goes to (a replay may name another app of the same org), the balancer constraint,
 * how long a replay may wait for room, and where a failed replay falls back to. Requests
 * without a routing header and responses without `fly-replay` never reach this file.
 *
 * @example (http-service.ts)
 *   const s = new HttpSteering(core, regions);
 *   new Http1Forwarder<Caller, Slot, Route>({
 *     connect: (info, tried, gone, id, route) => upstream.connect({ app: (route?.app ?? info.target.app).name, prefs: route?.steer, waitMs: route?.waitMs, ... }),
 *     route: s.route, replay: s.replay, replayFailed: s.replayFailed, ...
 *   }, options);
 */
import type { Slot, Steer } from '../balancer/index.js';
import type { App, Machine, Service } from '../catalog/types.js';
import { NoCapacityError, ReplayInvalidError, SixpnError, SteerUnavailableError, UpstreamUnreachableError } from '../errors.js';
import type { ConnInfo, ProxyCore } from './core.js';
import type { ReplayState, ReplayTo } from './http1/forwarder.js';
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

  /** hooks.route: the caller's routing headers as a route, or the 400/404 answer. */
  readonly route = (info: ConnInfo, head: HeadParser, requestId: string): Route | SixpnError => {
    const app = info.target.app;
    try {
      const steer = steerFromHeaders(steeringHeaders(head), app.name, this.core.view, this.regions);
      steeredTotal.inc({ app: app.name, outcome: 'steered' });
      return { app, service: info.target.service, steer, forced: steer.forceMachine || steer.forceRegions, waitMs: null, asked: null, back: null };
    } catch (err) {
      steeredTotal.inc({ app: app.name, outcome: 'refused' });
      void requestId; // the failed hook logs the answer once, with the request id
      return err instanceof SixpnError ? err : new SixpnError('bad routing header', { cause: err });
    }
  };

  /**
   * What a forced route's caller is told when its pick found nothing: 503 naming the region or
   * machine, instead of the app's usual 502/503. Other errors (and unforced routes) pass as they are.
   */
  refusal(route: Route | null, err: SixpnError): SixpnError {
    if (route === null || !route.forced || !(err instanceof NoCapacityError || err instanceof UpstreamUnreachableError)) return err;
    if (err instanceof UpstreamUnreachableError && err.message !== 'no machine available') return err; // every connect failed: that is the story
    return new SteerUnavailableError(unavailableText(route.steer, route.app.name, err instanceof NoCapacityError), { cause: err });
  }

  /** hooks.replay: a machine answered with fly-replay. */
  readonly replay = (info: ConnInfo, slot: Slot, response: HeadParser, route: Route | null, state: ReplayState, requestId: string): ReplayTo<Route> | SixpnError => {
    const app = route?.app ?? info.target.app;
    const service = route?.service ?? info.target.service;
    const machine = slot.machine;
    let plan: ReplayPlan;
    try {
      if (response.replayFields > 1) throw new ReplayInvalidError('fly-replay: given more than once');
      const r = parseReplay(response.value(response.replayField), this.regions);
      plan = planReplay(r, { app, machine, service }, this.core.view, state, this.now());
    } catch (err) {
      // Logged once where the request ends (the forwarder's failed hook), with the code and this machine.
      const e = err instanceof SixpnError && err.code !== 'SIXPN_INTERNAL' ? err : new ReplayInvalidError(`invalid fly-replay: ${(err as Error).message}`, { cause: err });
      replaysTotal.inc({ app: app.name, outcome: outcomeOf(e) });
      return e;
    }
    replaysTotal.inc({ app: app.name, outcome: 'replayed' });
    this.core.log.info({ app: app.name, machine: machine.id, to_app: plan.app.name, request_id: requestId, replays: state.replays + 1 }, 'request replayed');
    const forced = plan.steer.forceMachine || plan.steer.forceRegions;
    return {
      route: {
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
  readonly replayFailed = (info: ConnInfo, route: Route, err: SixpnError, requestId: string): ReplayTo<Route> | null => {
    const back = route.back;
    if (back === null) {
      replaysTotal.inc({ app: (route.asked ?? route.app).name, outcome: 'failed' });
      return null;
    }
    replaysTotal.inc({ app: back.app.name, outcome: 'fallback' });
    const e = this.refusal(route, err);
    this.core.log.info({ app: back.app.name, machine: back.source.id, to_app: route.app.name, request_id: requestId, code: e.code, reason: e.message, caller: info.caller }, `replay failed; back to its source (${back.mode})`);
    return {
      route: { app: back.app, service: back.service, steer: fallbackSteer(back.mode, back.source), forced: back.mode === 'force_self', waitMs: null, asked: back.app, back: null },
      header: `fly-replay-failed: ${replayFailed(back.plan, `${e.status} ${e.message}`)}\r\n`,
      excludeSource: false,
    };
  };
}
