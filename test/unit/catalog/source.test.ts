// The address a host dials a machine from: its own address in the machine's org, only on a host,
// never for an `upstream` machine; it follows the host's id.
import { describe, expect, it } from 'vitest';
import { MemoryStore } from '../../../src/catalog/memory.js';
import { localHostName, sourcePicker } from '../../../src/catalog/source.js';
import { CatalogView } from '../../../src/catalog/view.js';

describe('sourcePicker', () => {
  it('answers <org>:<host id>::3 for a machine of that org, nothing elsewhere', async () => {
    const store = await MemoryStore.open({ regions: ['ewr'] });
    await store.createOrg({ name: 'acme', network_id: 0x18 });
    await store.createOrg({ name: 'globex', network_id: 0x30 });
    await store.createApp({ name: 'web', org: 'acme' });
    await store.createApp({ name: 'intranet', org: 'globex' });
    await store.registerHost({ name: 'ewr-1', region: 'ewr', host_id: 0x13d59598, driver: 'netns', session: 's' }, { reservedHostIds: [], staleAfterMs: 1000 });
    const web = await store.registerMachine({ app: 'web', region: 'ewr' }, { hostId: 0x0a7b007d });
    const intra = await store.registerMachine({ app: 'intranet', region: 'ewr' }, { hostId: 0x0a7b007d });
    const byPort = await store.registerMachine({ app: 'web', region: 'ewr', upstream: '127.0.0.1:9000' }, { hostId: 0x0a7b007d });
    const view = await CatalogView.open(store);
    const pick = sourcePicker(view, 'ewr-1');
    expect(pick(web)).toBe('fdaa:0:18:13d5:9598::3');
    expect(pick(intra)).toBe('fdaa:0:30:13d5:9598::3');
    expect(pick(web)).toBe('fdaa:0:18:13d5:9598::3'); // cached, same answer
    expect(pick(byPort)).toBeUndefined();
    expect(sourcePicker(view, null)(web)).toBeUndefined();
    expect(sourcePicker(view, 'no-such-host')(web)).toBeUndefined();
    expect(pick({ ...web, app: 'gone' })).toBeUndefined();
    expect(localHostName({ node: { name: 'n1' }, host: { enabled: true, driver: 'netns', name: '' } })).toBe('n1');
    expect(localHostName({ node: { name: 'n1' }, host: { enabled: true, driver: 'local', name: 'h' } })).toBeNull();
    expect(localHostName({ node: { name: 'n1' }, host: { enabled: false, driver: 'netns', name: 'h' } })).toBeNull();
    view.close();
    await store.close();
  });
});
