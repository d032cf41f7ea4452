/**
 * TCP services: pick a machine, dial it (next candidate on connect failure), optionally send a
 * PROXY protocol header, then pipe bytes both ways with back-pressure and half-close. Nothing
 * is buffered beyond the streams' high-water marks; an error on either side destroys both.
 */
import type net from 'node:net';
import type { Slot } from '../balancer/index.js';
import type { ConnInfo, ProxyCore } from './core.js';
import { appMetrics, deniedTotal } from './metrics.js';
import { proxyHeader } from './proxyproto.js';

export async function proxyTcp(core: ProxyCore, caller: net.Socket, info: ConnInfo): Promise<void> {
  const { target } = info;
  if (info.denied) {
    deniedTotal.inc({ proto: 'tcp' });
    core.log.warn({ caller: info.caller, flycast: info.flycast, port: info.port, app: target.app.name, reason: info.denied }, 'caller denied');
    caller.destroy();
    return;
  }
  appMetrics(target.app.name).acceptedTcp.inc();
  caller.setNoDelay(true);
  core.inFlight++;
  let done = false;
  const finish = (): void => {
    if (done) return;
    done = true;
    core.inFlight--;
  };
  caller.once('close', finish);
  // Until a machine is connected, errors only end the caller.
  const earlyError = (): void => {
    caller.destroy();
  };
  caller.on('error', earlyError);
  const gone = (): boolean => caller.destroyed;
  const tried = new Set<Slot>();
  const limits = target.service.concurrency;
  for (let attempt = 0; attempt < core.config.connect_tries; attempt++) {
    const slot = await core.acquire(target.app.name, limits, tried, gone);
    if (typeof slot === 'string') {
      core.log.warn({ caller: info.caller, flycast: info.flycast, port: info.port, app: target.app.name, reason: slot === 'full' ? 'all machines at hard limit' : 'no machine available' }, 'connection refused');
      caller.destroy();
      return;
    }
    const up = await core.dial(slot, target.service);
    if (up instanceof Error) {
      core.connectFailed(slot, up);
      tried.add(slot);
      if (gone()) return;
      continue;
    }
    core.balancer.reportSuccess(slot);
    if (gone()) {
      up.destroy();
      core.release(slot);
      return;
    }
    caller.off('error', earlyError);
    splice(core, caller, up, slot, info);
    return;
  }
  core.log.warn({ caller: info.caller, flycast: info.flycast, port: info.port, app: target.app.name, tries: tried.size }, 'no machine reachable');
  caller.destroy();
}

function splice(core: ProxyCore, caller: net.Socket, up: net.Socket, slot: Slot, info: ConnInfo): void {
  const pp = info.target.port.handlers.includes('proxy_proto');
  if (pp) {
    up.write(
      proxyHeader(info.target.port.proxy_proto_options?.version ?? 'v1', {
        srcAddress: info.caller,
        srcPort: info.callerPort,
        dstAddress: info.flycast,
        dstPort: info.port,
      }),
    );
  }
  let released = false;
  const release = (): void => {
    if (released) return;
    released = true;
    core.release(slot);
  };
  const kill = (): void => {
    caller.destroy();
    up.destroy();
  };
  caller.on('error', kill);
  up.on('error', kill);
  const idle = core.config.idle_timeout;
  if (idle > 0) {
    caller.setTimeout(idle, kill);
    up.setTimeout(idle, kill);
  }
  // A graceful close of one side ends the other once its writes are flushed (half-close kept).
  caller.once('close', (hadError) => (hadError ? up.destroy() : up.end()));
  up.once('close', (hadError) => {
    release();
    if (hadError) caller.destroy();
    else caller.end();
  });
  caller.pipe(up);
  up.pipe(caller);
}
