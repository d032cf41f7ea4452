/**
 * The source address a host dials a machine from: its own address in the machine's org
 * (`<org>:<host id>::3`, src/addressing `hostOrgAddress`). The Flycast proxy (on a caller's
 * behalf) and the health checker use it, so that their packets meet the same org rule on every
 * hop as a machine's own (the host's filter, the mesh's, the far host's cryptokey routing):
 * nothing the host sends to a machine is an exception.
 *
 * ```ts
 * const sourceFor = sourcePicker(view, 'ewr-1');
 * net.connect({ host: m.address, port, localAddress: sourceFor(m) });
 * ```
 *
 * Undefined (let the kernel choose) on a node that is no host, for a machine dialed at an
 * `upstream` (loopback demo, benchmarks) and while the host or the org is unknown. One map
 * lookup per dial after the first: addresses are cached per network id and host id.
 */
import { hostOrgAddress } from '../addressing/index.js';
import type { Machine } from './types.js';
import type { CatalogView } from './view.js';

export type SourcePicker = (m: Machine) => string | undefined;

const none: SourcePicker = () => undefined;

/** `hostName`: this node's host (null when it runs none). */
export function sourcePicker(view: CatalogView, hostName: string | null): SourcePicker {
  if (hostName === null) return none;
  let hostId = -1;
  const byNetwork = new Map<number, string>();
  return (m) => {
    if (m.upstream !== undefined) return undefined;
    const host = view.hosts.get(hostName);
    if (!host) return undefined;
    if (host.host_id !== hostId) {
      hostId = host.host_id;
      byNetwork.clear();
    }
    const app = view.apps.get(m.app);
    const org = app && view.orgs.get(app.org);
    if (!org) return undefined;
    let address = byNetwork.get(org.network_id);
    if (address === undefined) byNetwork.set(org.network_id, (address = hostOrgAddress(org.network_id, hostId)));
    return address;
  };
}

/** This node's host name when it runs machines in namespaces (the only machines dialed at 6PN addresses here). */
export function localHostName(config: { node: { name: string }; host: { enabled: boolean; driver: string; name: string } }): string | null {
  return config.host.enabled && config.host.driver === 'netns' ? config.host.name || config.node.name : null;
}
