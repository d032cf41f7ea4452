/**
 * The process metrics every Prometheus client exports (`process_*`, `nodejs_*`), under the
 * names and help texts prom-client 15 used, so dashboards and rules keep working. Values are
 * read when scraped (/proc, process and v8 counters); between scrapes the only work is Node's
 * own: the event-loop delay sampler (native, every 10 ms) and a gc observer, which run at
 * neither a request's nor a connection's pace.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { constants as perf, monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks';
import { getHeapSpaceStatistics } from 'node:v8';
import type { Registry } from './registry.js';

// Whole seconds, rounded down: a start time in the future (Math.round can give one) would read as a clock error.
const START_SECONDS = Math.floor(Date.now() / 1000 - process.uptime());
const GC_KINDS: Record<number, string> = {
  [perf.NODE_PERFORMANCE_GC_MAJOR]: 'major',
  [perf.NODE_PERFORMANCE_GC_MINOR]: 'minor',
  [perf.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
  [perf.NODE_PERFORMANCE_GC_WEAKCB]: 'weakcb',
};

/** Undocumented but long-standing: prom-client read handles and requests the same way. */
const internals = process as unknown as { _getActiveHandles?: () => object[]; _getActiveRequests?: () => object[] };

/** `VmRSS`, `VmSize`, `VmData` of /proc/self/status in bytes; null where there is no /proc. */
function procStatus(): Record<'VmRSS' | 'VmSize' | 'VmData', number> | null {
  let text: string;
  try {
    text = readFileSync('/proc/self/status', 'utf8');
  } catch {
    return null;
  }
  const kb = (key: string): number => {
    const m = new RegExp(`^${key}:\\s*(\\d+) kB`, 'm').exec(text);
    return m ? Number(m[1]) * 1024 : 0;
  };
  return { VmRSS: kb('VmRSS'), VmSize: kb('VmSize'), VmData: kb('VmData') };
}

/** The soft limit on open files, from /proc/self/limits; undefined where it cannot be read. */
function maxFds(): number | undefined {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max open files'));
    const n = Number(line?.split(/\s{2,}/)[1]);
    return Number.isFinite(n) ? n : undefined;
  } catch {
    return undefined;
  }
}

/** Counts of each name in `names`. */
function tally(names: Iterable<string>): Map<string, number> {
  const out = new Map<string, number>();
  for (const n of names) out.set(n, (out.get(n) ?? 0) + 1);
  return out;
}

/** Defines the process metrics on `reg`; returns what stops the two samplers (tests define them on throwaway registries). */
export function registerProcessMetrics(reg: Registry): () => void {
  let lastCpu = { user: 0, system: 0 };
  const cpuUser = reg.counter({
    name: 'process_cpu_user_seconds_total',
    help: 'Total user CPU time spent in seconds.',
    collect() {
      // Since the process started (prom-client counted from when its metrics were enabled).
      const now = process.cpuUsage();
      cpuUser.inc((now.user - lastCpu.user) / 1e6);
      cpuSystem.inc((now.system - lastCpu.system) / 1e6);
      cpuTotal.inc((now.user - lastCpu.user + now.system - lastCpu.system) / 1e6);
      lastCpu = now;
    },
  });
  const cpuSystem = reg.counter({ name: 'process_cpu_system_seconds_total', help: 'Total system CPU time spent in seconds.' });
  const cpuTotal = reg.counter({ name: 'process_cpu_seconds_total', help: 'Total user and system CPU time spent in seconds.' });

  reg.gauge({
    name: 'process_start_time_seconds',
    help: 'Start time of the process since unix epoch in seconds.',
    merge: 'min',
    collect() {
      this.set(START_SECONDS);
    },
  });

  if (procStatus()) {
    const resident = reg.gauge({
      name: 'process_resident_memory_bytes',
      help: 'Resident memory size in bytes.',
      collect() {
        const s = procStatus();
        if (!s) return;
        resident.set(s.VmRSS);
        virtual.set(s.VmSize);
        heap.set(s.VmData);
      },
    });
    const virtual = reg.gauge({ name: 'process_virtual_memory_bytes', help: 'Virtual memory size in bytes.' });
    const heap = reg.gauge({ name: 'process_heap_bytes', help: 'Process heap size in bytes.' });
  } else {
    reg.gauge({
      name: 'process_resident_memory_bytes',
      help: 'Resident memory size in bytes.',
      collect() {
        this.set(process.memoryUsage.rss());
      },
    });
  }

  if (process.platform === 'linux') {
    reg.gauge({
      name: 'process_open_fds',
      help: 'Number of open file descriptors.',
      collect() {
        // Less the descriptor readdir itself held.
        this.set(readdirSync('/proc/self/fd').length - 1);
      },
    });
  }
  const fdLimit = maxFds();
  if (fdLimit !== undefined) {
    reg.gauge({
      name: 'process_max_fds',
      help: 'Maximum number of open file descriptors.',
      merge: 'max',
      collect() {
        this.set(fdLimit);
      },
    });
  }

  const delay = monitorEventLoopDelay({ resolution: 10 });
  delay.enable();
  const lag = reg.gauge({
    name: 'nodejs_eventloop_lag_seconds',
    help: 'Lag of event loop in seconds.',
    merge: 'max',
    collect() {
      lagMin.set(delay.min / 1e9);
      lagMax.set(delay.max / 1e9);
      lagMean.set(delay.mean / 1e9);
      lagStddev.set(delay.stddev / 1e9);
      lagP50.set(delay.percentile(50) / 1e9);
      lagP90.set(delay.percentile(90) / 1e9);
      lagP99.set(delay.percentile(99) / 1e9);
      delay.reset();
      // How long a callback queued now waits: the scrape's own collecting included, as before.
      const t0 = process.hrtime.bigint();
      return new Promise<void>((resolve) =>
        setImmediate(() => {
          lag.set(Number(process.hrtime.bigint() - t0) / 1e9);
          resolve();
        }),
      );
    },
  });
  const lagMin = reg.gauge({ name: 'nodejs_eventloop_lag_min_seconds', help: 'The minimum recorded event loop delay.', merge: 'min' });
  const lagMax = reg.gauge({ name: 'nodejs_eventloop_lag_max_seconds', help: 'The maximum recorded event loop delay.', merge: 'max' });
  const lagMean = reg.gauge({ name: 'nodejs_eventloop_lag_mean_seconds', help: 'The mean of the recorded event loop delays.', merge: 'max' });
  const lagStddev = reg.gauge({ name: 'nodejs_eventloop_lag_stddev_seconds', help: 'The standard deviation of the recorded event loop delays.', merge: 'max' });
  const lagP50 = reg.gauge({ name: 'nodejs_eventloop_lag_p50_seconds', help: 'The 50th percentile of the recorded event loop delays.', merge: 'max' });
  const lagP90 = reg.gauge({ name: 'nodejs_eventloop_lag_p90_seconds', help: 'The 90th percentile of the recorded event loop delays.', merge: 'max' });
  const lagP99 = reg.gauge({ name: 'nodejs_eventloop_lag_p99_seconds', help: 'The 99th percentile of the recorded event loop delays.', merge: 'max' });

  // Walks every resource, handle and request: once a scrape, a few ms with tens of thousands of sockets.
  const resources = reg.gauge({
    name: 'nodejs_active_resources',
    help: 'Number of active resources that are currently keeping the event loop alive, grouped by async resource type.',
    labelNames: ['type'] as const,
    collect() {
      const list = process.getActiveResourcesInfo();
      resources.reset();
      for (const [type, n] of tally(list)) resources.set({ type }, n);
      resourcesTotal.set(list.length);
    },
  });
  const resourcesTotal = reg.gauge({ name: 'nodejs_active_resources_total', help: 'Total number of active resources.' });
  for (const [kind, read] of [
    ['handles', internals._getActiveHandles],
    ['requests', internals._getActiveRequests],
  ] as const) {
    if (typeof read !== 'function') continue;
    const byType = reg.gauge({
      name: `nodejs_active_${kind}`,
      help: `Number of active libuv ${kind} grouped by ${kind === 'handles' ? 'handle' : 'request'} type. Every ${kind === 'handles' ? 'handle' : 'request'} type is C++ class name.`,
      labelNames: ['type'] as const,
      collect() {
        const list = read.call(process);
        byType.reset();
        for (const [type, n] of tally(list.map((o) => o?.constructor?.name ?? 'unknown'))) byType.set({ type }, n);
        total.set(list.length);
      },
    });
    const total = reg.gauge({ name: `nodejs_active_${kind}_total`, help: `Total number of active ${kind}.` });
  }

  const heapTotal = reg.gauge({
    name: 'nodejs_heap_size_total_bytes',
    help: 'Process heap size from Node.js in bytes.',
    collect() {
      const m = process.memoryUsage();
      heapTotal.set(m.heapTotal);
      heapUsed.set(m.heapUsed);
      external.set(m.external);
    },
  });
  const heapUsed = reg.gauge({ name: 'nodejs_heap_size_used_bytes', help: 'Process heap size used from Node.js in bytes.' });
  const external = reg.gauge({ name: 'nodejs_external_memory_bytes', help: 'Node.js external memory size in bytes.' });

  const spaceTotal = reg.gauge({
    name: 'nodejs_heap_space_size_total_bytes',
    help: 'Process heap space size total from Node.js in bytes.',
    labelNames: ['space'] as const,
    collect() {
      for (const s of getHeapSpaceStatistics()) {
        const space = s.space_name.replace(/_space$/, '');
        spaceTotal.set({ space }, s.space_size);
        spaceUsed.set({ space }, s.space_used_size);
        spaceAvailable.set({ space }, s.space_available_size);
      }
    },
  });
  const spaceUsed = reg.gauge({ name: 'nodejs_heap_space_size_used_bytes', help: 'Process heap space size used from Node.js in bytes.', labelNames: ['space'] as const });
  const spaceAvailable = reg.gauge({ name: 'nodejs_heap_space_size_available_bytes', help: 'Process heap space size available from Node.js in bytes.', labelNames: ['space'] as const });

  const [major = 0, minor = 0, patch = 0] = process.version.slice(1).split('.').map(Number);
  reg.gauge({
    name: 'nodejs_version_info',
    help: 'Node.js version info.',
    labelNames: ['version', 'major', 'minor', 'patch'] as const,
    merge: 'max',
    collect() {
      // In collect, so that a reset registry still shows it.
      this.set({ version: process.version, major, minor, patch }, 1);
    },
  });

  const gc = reg.histogram({
    name: 'nodejs_gc_duration_seconds',
    help: 'Garbage collection duration by kind, one of major, minor, incremental or weakcb.',
    labelNames: ['kind'] as const,
    buckets: [0.001, 0.01, 0.1, 1, 2, 5],
  });
  const gcObserver = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const kind = GC_KINDS[(e as { detail?: { kind?: number } }).detail?.kind ?? -1];
      if (kind) gc.observe({ kind }, e.duration / 1000);
    }
  });
  gcObserver.observe({ entryTypes: ['gc'] });

  return () => {
    delay.disable();
    gcObserver.disconnect();
  };
}
