// `sixpn hosts list`'s MESH column: the tunnel to each host as the answering host sees it.
import { describe, expect, it } from 'vitest';
import { meshText } from '../../../src/cli/commands/hosts.js';
import type { HostView } from '../../../src/control/machines.js';

const host = (mesh?: HostView['mesh']): HostView => ({ name: 'iad-1', region: 'iad', host_id: 0x11, state: 'up', driver: 'netns', heartbeat_at: 1, session: 's', created_at: 1, updated_at: 1, status: 'up', heartbeat_age_ms: 0, machines: 0, ...(mesh ? { mesh } : {}) });

describe('meshText', () => {
  const now = Math.floor(Date.now() / 1000);
  it.each([
    ['no mesh role on the answering node', undefined, '-'],
    ['the answering host itself, userspace', { seen_from: 'ewr-1', self: true as const, interface: 'sixpn-mesh', implementation: 'userspace' }, 'self (wireguard-go)'],
    ['the answering host itself, kernel', { seen_from: 'ewr-1', self: true as const, interface: 'sixpn-mesh', implementation: 'kernel' }, 'self (kernel)'],
    ['a host that is no peer (no key, refused)', { seen_from: 'ewr-1', peer: false as const }, 'no peer'],
    ['a peer without a handshake yet', { seen_from: 'ewr-1', latest_handshake: 0, rx_bytes: 0, tx_bytes: 148 }, 'no handshake, rx 0 B tx 148 B'],
    ['a peer handshaken a minute ago', { seen_from: 'ewr-1', latest_handshake: now - 65, rx_bytes: 3 * 1024 * 1024, tx_bytes: 2048 }, 'handshake 1m ago, rx 3.0 MiB tx 2.0 KiB'],
  ])('%s', (_what, mesh, want) => {
    expect(meshText(host(mesh))).toBe(want);
  });
});
