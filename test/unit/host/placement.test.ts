// Placement as a table: --host pins, --region picks the up host with the fewest machines.
import { describe, expect, it } from 'vitest';
import type { Host } from '../../../src/catalog/types.js';
import { hostStatus, placeMachine } from '../../../src/host/placement.js';

const now = 1_000_000;
const host = (name: string, region: string, over: Partial<Host> = {}): Host => ({
  name,
  region,
  host_id: 2 + name.length,
  state: 'up',
  driver: 'netns',
  heartbeat_at: now - 1000,
  session: 's',
  created_at: 0,
  updated_at: 0,
  ...over,
});
const hosts = [host('ewr-a', 'ewr'), host('ewr-b', 'ewr'), host('ewr-c', 'ewr', { heartbeat_at: now - 60_000 }), host('iad-a', 'iad', { state: 'down' }), host('lhr-a', 'lhr')];
const machines = [{ host: 'ewr-a' }, { host: 'ewr-a' }, { host: 'ewr-b' }, { host: undefined }];

describe('placeMachine', () => {
  it.each([
    [{ region: 'ewr' }, 'ewr-b'], // fewest machines among the live hosts; ewr-c is silent
    [{ region: 'lhr' }, 'lhr-a'],
    [{ host: 'ewr-a' }, 'ewr-a'],
    [{ host: 'ewr-a', region: 'ewr' }, 'ewr-a'],
  ])('%o -> %s', (wish, name) => {
    expect(placeMachine(hosts, machines, wish, now, 6000).name).toBe(name);
  });

  it.each([
    [{ region: 'iad' }, 'SIXPN_NOT_FOUND', /no host in region iad is up \(hosts up: ewr-a in ewr, ewr-b in ewr, lhr-a in lhr\)/],
    [{ region: 'syd' }, 'SIXPN_NOT_FOUND', /no host in region syd is up/],
    [{ host: 'nope' }, 'SIXPN_NOT_FOUND', /host nope not found \(hosts: ewr-a in ewr \(up\)/],
    [{ host: 'ewr-c' }, 'SIXPN_CONFLICT', /host ewr-c is unreachable \(last heartbeat 60 s ago\)/],
    [{ host: 'iad-a' }, 'SIXPN_CONFLICT', /host iad-a is down/],
    [{ host: 'ewr-a', region: 'lhr' }, 'SIXPN_INVALID', /host ewr-a is in region ewr, not lhr/],
    [{}, 'SIXPN_INVALID', /needs a region or a host/],
  ])('%o is refused with %s', (wish, code, msg) => {
    let err: unknown;
    try {
      placeMachine(hosts, machines, wish, now, 6000);
    } catch (e) {
      err = e;
    }
    expect((err as { code: string }).code).toBe(code);
    expect((err as Error).message).toMatch(msg);
  });

  it('names no other host for a caller who may not see them (an org token)', () => {
    for (const wish of [{ region: 'iad' }, { host: 'nope' }]) {
      let msg = '';
      try {
        placeMachine(hosts, machines, wish, now, 6000, { listHosts: false });
      } catch (e) {
        msg = (e as Error).message;
      }
      expect(msg).toMatch(/^(no host in region iad is up|host nope not found)$/);
    }
  });

  it('says no host is up when there is none', () => {
    expect(() => placeMachine([], [], { region: 'ewr' }, now, 6000)).toThrow(/no host in region ewr is up \(no host is up\)/);
  });
});

describe('hostStatus', () => {
  it('tells up, down and unreachable apart', () => {
    expect(hostStatus({ state: 'up', heartbeat_at: now - 5999 }, now, 6000)).toBe('up');
    expect(hostStatus({ state: 'up', heartbeat_at: now - 6001 }, now, 6000)).toBe('unreachable');
    expect(hostStatus({ state: 'down', heartbeat_at: now }, now, 6000)).toBe('down');
  });
});
