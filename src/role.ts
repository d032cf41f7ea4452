/**
 * What every role (control API, proxy, DNS, health checker, gateway) receives and returns.
 *
 * A role is started with the node's shared context and hands back a handle: `drain` stops
 * accepting new work and lets what is in flight finish (SIGTERM), `close` releases everything.
 */
import type { CatalogStore } from './catalog/store.js';
import type { CatalogView } from './catalog/view.js';
import type { Config } from './config/index.js';
import type { Logger } from './observe/log.js';
import type { RegionTable } from './regions/index.js';

export interface NodeContext {
  config: Readonly<Config>;
  /** Folder of the config file. */
  baseDir: string;
  store: CatalogStore;
  view: CatalogView;
  regions: RegionTable;
  log: Logger;
  /** This node's host id (from `[node] host_id`), used for machine addresses. */
  hostId: number;
  /** Roles started before this one, by name, in the order of src/roles.ts (a later role may use an earlier one's handle). */
  roles: Map<string, RunningRole>;
}

export interface RunningRole {
  readonly name: string;
  /** Human-readable lines for the start-up banner ("proxy: fdaa:0:18:0:1::3:80 -> web"). */
  describe?(): string[];
  /** Stop accepting; resolve when in-flight work is done or `deadline` (epoch ms) passes. */
  drain?(deadline: number): Promise<void>;
  close(): Promise<void>;
}

export type RoleName = 'demo' | 'control' | 'health' | 'proxy' | 'dns' | 'host' | 'mesh' | 'gateway';
export type RoleStarter = (ctx: NodeContext) => Promise<RunningRole>;
