/**
 * The catalog store interface: every implementation (embedded file, Redis) passes the same
 * contract suite (test/unit/catalog/contract.ts).
 *
 * Mutations are atomic and validated with the rules in ./rules.ts; each one that changes
 * something publishes a CatalogChange to every subscriber, on this node and (Redis) on others.
 * Readers on hot paths never call the store: they keep a CatalogView (./view.ts).
 */
import type {
  App,
  AppInput,
  CatalogChange,
  CatalogSnapshot,
  FlycastIp,
  Host,
  HostInput,
  HostPatch,
  Machine,
  MachineInput,
  MachinePatch,
  Org,
  Peer,
  PeerInput,
  Service,
  Token,
  TokenKind,
} from './types.js';
import type { AppServicesOptions, HostOptions, HostUpdateOptions, MachineUpdateOptions } from './rules.js';

export type { AppServicesOptions, HostOptions, HostUpdateOptions, MachineUpdateOptions } from './rules.js';

/** `reset`: events may have been missed (reconnect); reload the snapshot. */
export type StoreEvent = CatalogChange | { kind: 'reset'; at: number };
export type StoreListener = (event: StoreEvent) => void;

export interface AllocationOptions {
  /** Host id (32-bit) used to derive a machine address when none is given. */
  hostId: number;
}

export interface PeerOptions {
  /** Host id of the WireGuard gateway; peer addresses live under it. */
  gatewayHostId: number;
}

export interface CatalogStore {
  readonly kind: 'embedded' | 'redis';

  snapshot(): Promise<CatalogSnapshot>;

  /** Conflict when the name or the network id is taken. */
  createOrg(org: Org): Promise<Org>;
  /** Conflict while the org still has apps, peers or Flycast addresses; its tokens go with it. */
  deleteOrg(name: string): Promise<void>;

  /** Conflict when the name is taken anywhere (app names are global, as on Fly). */
  createApp(app: AppInput): Promise<App>;
  /** Replaces the app's services (fly.toml's); `primary_region` too when given (null removes it). */
  updateAppServices(name: string, services: Service[], opts?: AppServicesOptions): Promise<App>;
  /** Removes the app with its machines and Flycast addresses. */
  deleteApp(name: string): Promise<void>;

  registerMachine(input: MachineInput, opts: AllocationOptions): Promise<Machine>;
  /** With `ifState`, a compare-and-set on the state (ConflictError when it is another). */
  updateMachine(id: string, patch: MachinePatch, opts?: MachineUpdateOptions): Promise<Machine>;
  removeMachine(id: string): Promise<void>;

  /** Allocates the next unused Flycast address of `org` (default: the app's org) for `app`. */
  allocateFlycast(app: string, org?: string): Promise<FlycastIp>;
  /** When `org` is given, the address must belong to it (Forbidden otherwise). */
  releaseFlycast(address: string, org?: string): Promise<void>;

  createPeer(input: PeerInput, opts: PeerOptions): Promise<Peer>;
  removePeer(org: string, name: string): Promise<void>;

  /**
   * Stores a token record (only the hash of its secret). Not part of snapshots or change
   * events: every API node reads tokens from the store per request, so a revocation holds at
   * once everywhere. Removes expired tokens (and the oldest dashboard sessions past a cap) in
   * the same write. NotFound for an org that does not exist, Conflict for a taken id.
   */
  createToken(token: Token): Promise<Token>;
  getToken(id: string): Promise<Token | undefined>;
  /** Every token that has not expired, oldest first. */
  listTokens(): Promise<Token[]>;
  revokeToken(id: string): Promise<void>;
  /** Revokes every token of a kind (all dashboard sessions, say); returns how many. */
  revokeTokens(kind: TokenKind): Promise<number>;

  /**
   * Registers a host agent, or the same name again (a restart): a new host gets the configured
   * host id or a free one; a known one keeps its own. Conflict on a host id clash, or while
   * another agent still heartbeats under that name.
   */
  registerHost(input: HostInput, opts: HostOptions): Promise<Host>;
  /** Heartbeats, state and WireGuard key; with `ifSession`, only while that agent runs the host. */
  updateHost(name: string, patch: HostPatch, opts?: HostUpdateOptions): Promise<Host>;
  /** Conflict while machines are placed on it. */
  removeHost(name: string): Promise<void>;

  /** Returns an unsubscribe function. */
  subscribe(listener: StoreListener): () => void;
  close(): Promise<void>;
}
