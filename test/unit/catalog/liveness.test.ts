// HostLiveness on a real embedded store and view, with a hand-driven clock: a host that stops
// heartbeating is unreachable after the timeout and back with its next beat; a clean shutdown is
// unreachable at once; when no host heartbeats at all (this node's view is stale), none is.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HostLiveness } from '../../../src/catalog/liveness.js';
import { MemoryStore } from '../../../src/catalog/memory.js';
import { CatalogView } from '../../../src/catalog/view.js';

const HOSTS = { reservedHostIds: [], staleAfterMs: 60_000 };
const settle = () => new Promise((r) => setImmediate(r));

describe('HostLiveness', () => {
  let store: MemoryStore;
  let view: CatalogView;
  let live: HostLiveness;
  let clock: number;
  let events: string[];

  beforeEach(async () => {
    store = await MemoryStore.open({ regions: ['ewr', 'iad', 'lhr'] });
    for (const [name, region] of [['ewr-1', 'ewr'], ['iad-1', 'iad'], ['lhr-1', 'lhr']] as const) {
      await store.registerHost({ name, region, driver: 'netns', session: name }, HOSTS);
    }
    view = await CatalogView.open(store);
    clock = Date.now();
    live = new HostLiveness(view, 1_000, () => clock);
    events = [];
    live.on('change', (h, up) => events.push(`${h} ${up ? 'up' : 'down'}`));
  });

  afterEach(async () => {
    live.close();
    view.close();
    await store.close();
  });

  /** Moves the clock, heartbeats the named hosts, and lets the timer look. */
  const tick = async (ms: number, beating: string[]) => {
    clock += ms;
    for (const h of beating) await store.updateHost(h, { heartbeat_at: clock });
    await settle();
    (live as unknown as { evaluate(): void }).evaluate();
  };

  it('a silent host goes unreachable after the timeout and comes back with its next heartbeat', async () => {
    expect(live.reachable('iad-1')).toBe(true);
    await tick(600, ['ewr-1', 'iad-1', 'lhr-1']);
    await tick(600, ['ewr-1', 'lhr-1']);
    expect(live.reachable('iad-1')).toBe(true); // 600 ms silent: not yet
    await tick(600, ['ewr-1', 'lhr-1']);
    expect(live.reachable('iad-1')).toBe(false);
    expect([...live.unreachable()]).toEqual(['iad-1']);
    expect(events).toEqual(['iad-1 down']);
    await tick(100, ['iad-1']);
    expect(live.reachable('iad-1')).toBe(true);
    expect(events).toEqual(['iad-1 down', 'iad-1 up']);
    expect(live.reachable(undefined)).toBe(true); // a machine registered by hand
  });

  it('counts a heartbeat when it arrives, not by the host\'s clock', async () => {
    await tick(900, ['ewr-1', 'lhr-1']);
    // iad's clock is an hour behind: its beat still counts as fresh here
    await store.updateHost('iad-1', { heartbeat_at: clock - 3_600_000 });
    await tick(900, ['ewr-1', 'lhr-1']);
    expect(live.reachable('iad-1')).toBe(true);
  });

  it('a clean shutdown (down) is unreachable at once; removing the host forgets it', async () => {
    await store.updateHost('lhr-1', { state: 'down' });
    await settle();
    expect(live.reachable('lhr-1')).toBe(false);
    await store.removeHost('lhr-1');
    await settle();
    expect(live.reachable('lhr-1')).toBe(true);
    expect(events).toEqual(['lhr-1 down', 'lhr-1 up']);
  });

  it('when no host heartbeats at all, the view is stale: none is declared unreachable', async () => {
    await tick(5_000, []);
    expect(live.unreachable().size).toBe(0);
    // one host beats again: now the silent ones are really silent
    await tick(10, ['ewr-1']);
    expect([...live.unreachable()].sort()).toEqual(['iad-1', 'lhr-1']);
  });

  it('a reloaded view keeps judging from the snapshot', async () => {
    await tick(600, ['ewr-1', 'lhr-1']);
    await view.reload();
    await tick(600, ['ewr-1', 'lhr-1']);
    expect(live.reachable('iad-1')).toBe(false);
  });
});
