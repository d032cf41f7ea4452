/**
 * A steady HTTP load for failover tests: `concurrency` loops of keep-alive GETs through undici
 * from a chosen source address, each request recorded (start, end, status or error, and the
 * machine that answered from its `x-machine` header), so a test can count failures per phase.
 */
import { Pool } from 'undici';

export interface LoadSample {
  start: number;
  end: number;
  status: number;
  machine: string;
  error: string;
}

export class SteadyLoad {
  readonly samples: LoadSample[] = [];
  private running = false;
  private loops: Promise<void>[] = [];
  private readonly pool: Pool;

  constructor(
    url: string,
    private readonly opts: { localAddress: string; concurrency: number; timeoutMs: number },
  ) {
    this.pool = new Pool(url, { connections: opts.concurrency, localAddress: opts.localAddress, headersTimeout: opts.timeoutMs, bodyTimeout: opts.timeoutMs });
  }

  start(): void {
    this.running = true;
    for (let i = 0; i < this.opts.concurrency; i++) this.loops.push(this.loop());
  }

  private async loop(): Promise<void> {
    while (this.running) {
      const start = Date.now();
      try {
        const r = await this.pool.request({ path: '/', method: 'GET' });
        await r.body.text();
        const m = r.headers['x-machine'];
        this.samples.push({ start, end: Date.now(), status: r.statusCode, machine: typeof m === 'string' ? m : '', error: '' });
      } catch (err) {
        this.samples.push({ start, end: Date.now(), status: 0, machine: '', error: (err as { code?: string }).code ?? String(err) });
        // Errors return at once (refused): do not spin.
        await new Promise((r) => setTimeout(r, 5));
      }
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
    this.loops = [];
    await this.pool.close();
  }

  /** Samples that started in [from, to). */
  between(from: number, to = Infinity): LoadSample[] {
    return this.samples.filter((s) => s.start >= from && s.start < to);
  }
}

export const failed = (s: LoadSample): boolean => s.status !== 200;

/** Requests per machine name. */
export function byMachine(samples: LoadSample[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of samples) if (s.status === 200) out[s.machine] = (out[s.machine] ?? 0) + 1;
  return out;
}
