/**
 * The /v1 routes of the control API: orgs, apps, machines, Flycast IPs, WireGuard peers and
 * tokens.
 *
 * Reads go to the store (not the local view) so that a client reads its own writes even when
 * another API process made them. Every mutation is one store call, which validates and is
 * atomic: a request that fails changes nothing.
 *
 * Who may do what: the admin token everything; an org token (./tokens.ts) only what belongs to
 * its orgs (their apps, those apps' machines and Flycast IPs, their peers), and nothing that is
 * the platform's (creating and deleting orgs, tokens). Exposing an app into another org changes
 * both, so it needs a token of both orgs. Anything else is 403 naming what the token lacks.
 */
import { z } from 'zod';
import { normalizeAddress, orgDnsAddress, orgOf, orgPrefixCidr, parseHostPort } from '../addressing/index.js';
import { readFlyToml } from '../catalog/flytoml.js';
import { parseOrThrow } from '../catalog/rules.js';
import type { CatalogStore } from '../catalog/store.js';
import {
  machineInputSchema,
  nameSchema,
  orgSchema,
  peerNameSchema,
  publicKeySchema,
  regionCodeSchema,
  tokenKindSchema,
  tokenNameSchema,
  type AppInput,
  type CatalogSnapshot,
  type Org,
} from '../catalog/types.js';
import { ConflictError, ForbiddenError, NotFoundError, ValidationError } from '../errors.js';
import { defaultPeerName } from '../gateway/keys.js';
import type { CatalogView } from '../catalog/view.js';
import type { RunningRole } from '../role.js';
import { Router, type ApiRequest, type ApiResponse } from './http.js';
import { addMachineRoutes } from './machines.js';
import { adminOnly, allow, DEFAULT_EXPIRY, issueToken, orgList, parseExpiry, tokenView, type Principal } from './tokens.js';
import { withPeerStatus, type GatewayInfo } from './wireguard.js';

export interface RouteDeps {
  store: CatalogStore;
  hostId: number;
  gatewayHostId: number;
  gatewayInfo(): Promise<GatewayInfo>;
  /** The local gateway role, looked up per request (it starts after the control role). */
  gatewayRole(): RunningRole | undefined;
  /** For machines run by hosts: waits on this node's view, and the local host role (logs). */
  view: CatalogView;
  hostStaleAfterMs: number;
  hostRole(): RunningRole | undefined;
}

/** An org as the API shows it: with its /48 and resolver, which clients need for configs. */
export function orgView(o: Org): Org & { prefix: string; dns: string } {
  return { ...o, prefix: orgPrefixCidr(o.network_id), dns: orgDnsAddress(o.network_id) };
}

const orgCreateSchema = orgSchema.partial({ network_id: true });
const machineCreateSchema = machineInputSchema.omit({ app: true, host: true, config: true });
/** What PATCH may change; a machine that a host runs changes state only through its verbs. */
const machineUpdateSchema = z.object({ state: z.enum(['started', 'stopped']).optional() }).passthrough();
const ipCreateSchema = z
  .object({
    type: z.literal('private_v6', { errorMap: () => ({ message: 'must be "private_v6" (a Flycast address; public IPs are not part of sixpn)' }) }),
    org: nameSchema.optional(),
  })
  .strict();
const peerCreateSchema = z
  .object({
    name: peerNameSchema.optional(),
    region: regionCodeSchema,
    public_key: publicKeySchema,
  })
  .strict();

const tokenCreateSchema = z
  .object({
    orgs: z.array(nameSchema).min(1).max(16),
    name: tokenNameSchema.optional(),
    /** flyctl's `--expiry`: "30d", "720h", "90m". */
    expiry: z.string().default(DEFAULT_EXPIRY),
  })
  .strict();

const ok = (body: unknown, status = 200): ApiResponse => ({ status, body });

const NO_CONTENT: ApiResponse = { status: 204 };

/** The body as an object, or a ValidationError naming what was expected. */
function objectBody(req: ApiRequest, what: string): Record<string, unknown> {
  const b = req.body ?? {};
  if (typeof b !== 'object' || b === null || Array.isArray(b)) throw new ValidationError(`invalid ${what}: the body must be a JSON object`);
  return b as Record<string, unknown>;
}

function optionalOrg(req: ApiRequest): string | undefined {
  const org = req.query.get('org');
  if (org === null || org === '') return undefined;
  return parseOrThrow(nameSchema, org, 'org');
}

/** Lowest network id no org uses. */
function freeNetworkId(snap: CatalogSnapshot): number {
  const used = new Set(snap.orgs.map((o) => o.network_id));
  for (let id = 1; id <= 0xffff; id++) if (!used.has(id)) return id;
  throw new ConflictError('every network id from 1 to 65535 is taken');
}

export function buildRoutes(d: RouteDeps): Router {
  const { store } = d;
  const r = new Router();
  const run = addMachineRoutes(r, { store, view: d.view, staleAfterMs: d.hostStaleAfterMs, hostRole: d.hostRole });

  const findOrg = (snap: CatalogSnapshot, name: string): Org => {
    const org = snap.orgs.find((o) => o.name === name);
    if (!org) throw new NotFoundError(`org ${name} not found`);
    return org;
  };
  const findApp = (snap: CatalogSnapshot, name: string) => {
    const app = snap.apps.find((a) => a.name === name);
    if (!app) throw new NotFoundError(`app ${name} not found`);
    return app;
  };
  const findMachine = (snap: CatalogSnapshot, id: string) => {
    const m = snap.machines.find((x) => x.id === id);
    if (!m) throw new NotFoundError(`machine ${id} not found`);
    return m;
  };
  /** The app, after checking the caller may act on it. */
  const ownApp = (snap: CatalogSnapshot, name: string, p: Principal) => {
    const app = findApp(snap, name);
    allow(p, app.org, `app ${name}`);
    return app;
  };
  const ownMachine = (snap: CatalogSnapshot, id: string, p: Principal) => {
    const m = findMachine(snap, id);
    allow(p, snap.apps.find((a) => a.name === m.app)?.org, `machine ${id}`);
    return m;
  };
  /** For mutations that do not otherwise read: an org token's right to the app or machine is checked first. */
  const checkApp = async (p: Principal, name: string): Promise<void> => {
    if (p.kind === 'org') ownApp(await store.snapshot(), name, p);
  };
  const checkMachine = async (p: Principal, id: string): Promise<void> => {
    if (p.kind === 'org') ownMachine(await store.snapshot(), id, p);
  };
  /**
   * A machine's `upstream` is dialed by the proxy and the health checker from where they run, so
   * an org token may only point it inside its own org's prefix: anything else (another org's
   * machine, a loopback service, the admin API) would let the org reach past its boundary
   * through the platform. The admin token may set any upstream (dev mappings, outside backends).
   */
  const checkUpstream = async (p: Principal, appName: string, upstream: unknown): Promise<void> => {
    if (p.kind !== 'org' || typeof upstream !== 'string') return;
    const snap = await store.snapshot();
    const org = snap.orgs.find((o) => o.name === findApp(snap, appName).org);
    if (!org) throw new NotFoundError(`org of app ${appName} not found`);
    const hp = parseHostPort(upstream);
    const host = 'error' in hp ? undefined : normalizeAddress(hp.host);
    if (!host || orgOf(host) !== org.network_id) {
      throw new ForbiddenError(`upstream ${JSON.stringify(upstream)} is outside org ${org.name}'s prefix ${orgPrefixCidr(org.network_id)}: an org token may only point a machine at [address]:port inside it (the admin token may set any upstream)`);
    }
  };

  // Orgs
  r.add('GET', '/v1/orgs', async (req) => {
    const p = req.principal;
    return ok((await store.snapshot()).orgs.filter((o) => p.kind === 'admin' || p.orgs.has(o.name)).map(orgView));
  });
  r.add('POST', '/v1/orgs', async (req) => {
    adminOnly(req.principal, 'creating an org');
    const input = parseOrThrow(orgCreateSchema, objectBody(req, 'org'), 'org');
    if (input.network_id !== undefined) return ok(orgView(await store.createOrg({ name: input.name, network_id: input.network_id })), 201);
    // Another API process may take the same free id between our read and our write: retry.
    for (let attempt = 0; ; attempt++) {
      const snap = await store.snapshot();
      if (snap.orgs.some((o) => o.name === input.name)) throw new ConflictError(`org ${input.name} already exists`);
      try {
        return ok(orgView(await store.createOrg({ name: input.name, network_id: freeNetworkId(snap) })), 201);
      } catch (err) {
        if (!(err instanceof ConflictError) || attempt >= 4) throw err;
      }
    }
  });
  r.add('GET', '/v1/orgs/:org', async (req) => {
    allow(req.principal, req.params.org!, `org ${req.params.org}`);
    return ok(orgView(findOrg(await store.snapshot(), req.params.org!)));
  });
  r.add('DELETE', '/v1/orgs/:org', async (req) => {
    adminOnly(req.principal, 'deleting an org');
    await store.deleteOrg(req.params.org!);
    return NO_CONTENT;
  });

  // Apps
  r.add('GET', '/v1/apps', async (req) => {
    const p = req.principal;
    const org = optionalOrg(req);
    if (org !== undefined) allow(p, org, `org ${org}`);
    const snap = await store.snapshot();
    if (org !== undefined) findOrg(snap, org);
    return ok(snap.apps.filter((a) => (org === undefined ? p.kind === 'admin' || p.orgs.has(a.org) : a.org === org)));
  });
  r.add('POST', '/v1/apps', async (req) => {
    const body = objectBody(req, 'app');
    // An org that is not a string is refused by the store's validation, which runs before any write.
    if (typeof body.org === 'string') allow(req.principal, body.org, `an app of org ${body.org}`);
    return ok(await store.createApp(body as AppInput), 201);
  });
  r.add('GET', '/v1/apps/:app', async (req) => ok(ownApp(await store.snapshot(), req.params.app!, req.principal)));
  r.add('DELETE', '/v1/apps/:app', async (req) => {
    await checkApp(req.principal, req.params.app!);
    await store.deleteApp(req.params.app!);
    return NO_CONTENT;
  });
  r.add('PUT', '/v1/apps/:app/services', async (req) => {
    const b = req.body;
    await checkApp(req.principal, req.params.app!);
    if (Array.isArray(b)) return ok(await store.updateAppServices(req.params.app!, b));
    // fly.toml's shape (its JSON, as `fly config show` prints it): [http_service], [[services]],
    // primary_region; keys sixpn does not use are answered as warnings.
    const fly = readFlyToml(objectBody(req, 'services'), req.params.app!);
    const app = await store.updateAppServices(req.params.app!, fly.services, fly.primary_region !== undefined ? { primary_region: fly.primary_region } : {});
    return ok({ ...app, warnings: fly.warnings });
  });

  // Machines
  r.add('GET', '/v1/apps/:app/machines', async (req) => {
    const snap = await store.snapshot();
    ownApp(snap, req.params.app!, req.principal);
    return ok(snap.machines.filter((m) => m.app === req.params.app));
  });
  r.add('POST', '/v1/apps/:app/machines', async (req) => {
    const body = objectBody(req, 'machine');
    await checkApp(req.principal, req.params.app!);
    // With a config, a host runs it (`machines run`); without, it is registered by hand.
    if ('config' in body) return run.run(req.params.app!, body, req);
    const input = parseOrThrow(machineCreateSchema, body, 'machine');
    await checkUpstream(req.principal, req.params.app!, input.upstream);
    return ok(await store.registerMachine({ ...input, app: req.params.app! }, { hostId: d.hostId }), 201);
  });
  r.add('GET', '/v1/machines/:id', async (req) => ok(ownMachine(await store.snapshot(), req.params.id!, req.principal)));
  r.add('PATCH', '/v1/machines/:id', async (req) => {
    const body = objectBody(req, 'machine update');
    await checkMachine(req.principal, req.params.id!);
    const m = findMachine(await store.snapshot(), req.params.id!);
    // A host decides where its machines live and how they are dialed; the API does not override it.
    if (m.host !== undefined && body.upstream !== undefined) throw new ValidationError(`invalid machine update: upstream: machine ${m.id} is run by host ${m.host}, which gives it its address`);
    if (m.host !== undefined && body.region !== undefined && body.region !== m.region) {
      throw new ValidationError(`invalid machine update: region: machine ${m.id} runs on host ${m.host} in region ${m.region}; run a new machine in the other region instead`);
    }
    await checkUpstream(req.principal, m.app, body.upstream);
    if ('state' in body) {
      parseOrThrow(machineUpdateSchema, body, 'machine update');
      if (await run.findRun(req.params.id!, req.principal)) throw new ValidationError(`machine ${req.params.id} is run by a host: change its state with /start, /stop, /restart or DELETE`);
    }
    return ok(await store.updateMachine(req.params.id!, body));
  });
  // A machine a host runs goes through the host (./machines.ts); one registered by hand changes at once.
  r.add('DELETE', '/v1/machines/:id', async (req) => {
    const m = await run.findRun(req.params.id!, req.principal);
    if (m) return ok(await run.destroy(m, req));
    await store.removeMachine(req.params.id!);
    return NO_CONTENT;
  });
  r.add('POST', '/v1/machines/:id/stop', async (req) => {
    const m = await run.findRun(req.params.id!, req.principal);
    return ok(m ? await run.stop(m, req) : await store.updateMachine(req.params.id!, { state: 'stopped' }));
  });
  r.add('POST', '/v1/machines/:id/start', async (req) => {
    const m = await run.findRun(req.params.id!, req.principal);
    return ok(m ? await run.start(m, req) : await store.updateMachine(req.params.id!, { state: 'started' }));
  });

  // Flycast IPs
  r.add('GET', '/v1/apps/:app/ips', async (req) => {
    const snap = await store.snapshot();
    ownApp(snap, req.params.app!, req.principal);
    return ok(snap.flycast.filter((f) => f.app === req.params.app));
  });
  r.add('POST', '/v1/apps/:app/ips', async (req) => {
    const p = req.principal;
    const input = parseOrThrow(ipCreateSchema, objectBody(req, 'ip'), 'ip');
    if (p.kind === 'org') {
      const app = ownApp(await store.snapshot(), req.params.app!, p);
      // An address in another org's network lets that org's callers in: both orgs must agree.
      if (input.org !== undefined && input.org !== app.org && !p.orgs.has(input.org)) {
        throw new ForbiddenError(`exposing app ${app.name} into org ${input.org} needs a token of both orgs (${app.org} and ${input.org}) or the admin token; this token is for org ${orgList(p)} only`);
      }
    }
    return ok(await store.allocateFlycast(req.params.app!, input.org), 201);
  });
  r.add('DELETE', '/v1/apps/:app/ips/:address', async (req) => {
    const org = optionalOrg(req);
    const address = normalizeAddress(req.params.address!);
    if (!address) throw new ValidationError(`${JSON.stringify(req.params.address)} is not an IPv6 address`);
    const snap = await store.snapshot();
    ownApp(snap, req.params.app!, req.principal);
    const ip = snap.flycast.find((f) => f.address === address);
    if (!ip || ip.app !== req.params.app) throw new NotFoundError(`flycast ip ${address} is not allocated to app ${req.params.app}`);
    await store.releaseFlycast(address, org);
    return NO_CONTENT;
  });

  // WireGuard peers
  r.add('GET', '/v1/orgs/:org/wireguard', async (req) => {
    allow(req.principal, req.params.org!, `org ${req.params.org}`);
    const snap = await store.snapshot();
    findOrg(snap, req.params.org!);
    return ok(withPeerStatus(snap.peers.filter((p) => p.org === req.params.org), d.gatewayRole()));
  });
  r.add('POST', '/v1/orgs/:org/wireguard', async (req) => {
    const body = objectBody(req, 'wireguard peer');
    if ('private_key' in body) {
      throw new ValidationError('invalid wireguard peer: private_key: never send a private key; generate the key pair locally and send only public_key');
    }
    const input = parseOrThrow(peerCreateSchema, body, 'wireguard peer');
    allow(req.principal, req.params.org!, `org ${req.params.org}`);
    const org = findOrg(await store.snapshot(), req.params.org!);
    // Resolve the gateway first: if its key is unavailable, no peer is created.
    const gateway = await d.gatewayInfo();
    const create = (name: string) =>
      store.createPeer({ name, org: org.name, region: input.region, public_key: input.public_key }, { gatewayHostId: d.gatewayHostId });
    let peer;
    if (input.name !== undefined) peer = await create(input.name);
    else {
      // A generated name may collide with an earlier one; draw again a few times.
      for (let attempt = 0; ; attempt++) {
        try {
          peer = await create(defaultPeerName());
          break;
        } catch (err) {
          if (!(err instanceof ConflictError) || attempt >= 4) throw err;
        }
      }
    }
    return ok({ peer, gateway, dns: orgDnsAddress(org.network_id), allowed_ips: orgPrefixCidr(org.network_id) }, 201);
  });
  r.add('DELETE', '/v1/orgs/:org/wireguard/:name', async (req) => {
    allow(req.principal, req.params.org!, `org ${req.params.org}`);
    await store.removePeer(req.params.org!, req.params.name!);
    return NO_CONTENT;
  });

  // Tokens: the platform's (an org token cannot mint or revoke tokens, so a leaked one cannot
  // make itself permanent: revoking it ends the leak).
  r.add('GET', '/v1/tokens', async (req) => {
    adminOnly(req.principal, 'listing tokens');
    const org = optionalOrg(req);
    const kind = req.query.get('kind');
    if (kind !== null) parseOrThrow(tokenKindSchema, kind, 'kind');
    const tokens = await store.listTokens();
    return ok(tokens.filter((t) => (org === undefined || t.orgs.includes(org)) && (kind === null || t.kind === kind)).map(tokenView));
  });
  r.add('POST', '/v1/tokens', async (req) => {
    adminOnly(req.principal, 'creating a token');
    const input = parseOrThrow(tokenCreateSchema, objectBody(req, 'token'), 'token');
    const now = Date.now();
    const { token, record } = issueToken('org', input.orgs, input.name ?? `org token for ${input.orgs.join(', ')}`, now + parseExpiry(input.expiry), now);
    return ok({ ...tokenView(await store.createToken(record)), token }, 201);
  });
  r.add('DELETE', '/v1/tokens/:id', async (req) => {
    adminOnly(req.principal, 'revoking a token');
    await store.revokeToken(req.params.id!);
    return NO_CONTENT;
  });
  r.add('DELETE', '/v1/tokens', async (req) => {
    adminOnly(req.principal, 'revoking tokens');
    const kind = parseOrThrow(tokenKindSchema, req.query.get('kind') ?? '', 'kind');
    return ok({ revoked: await store.revokeTokens(kind) });
  });

  return r;
}
