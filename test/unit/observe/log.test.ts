import { describe, expect, it } from 'vitest';
import { resolve } from 'node:path';
import { ROOT } from '../../harness/env.js';
import { run } from '../../harness/procs.js';

// Each case runs in a fresh process on the built module (npm test builds first): the root
// logger writes to fd 1 through pino's async destination (or pino-pretty's worker thread).
const LOG = resolve(ROOT, 'dist/observe/log.js');
const script = (opts: string): string =>
  `import(${JSON.stringify(LOG)}).then((m) => { const l = m.createRootLogger(${opts}); l.debug('dbg'); l.info({ app: 'web' }, 'hello'); m.flushLogs(); });`;

async function logOutput(opts: string, env: Record<string, string> = {}): Promise<string> {
  const r = await run(process.execPath, ['-e', script(opts)], { env: { ...process.env, ...env }, timeoutMs: 20_000 });
  expect(r.code, r.stderr).toBe(0);
  return r.stdout;
}

describe('createRootLogger', () => {
  it('writes one JSON line per event at the configured level', async () => {
    const out = await logOutput("{ level: 'info' }");
    const lines = out.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 30, app: 'web', msg: 'hello' });
    expect(typeof lines[0].time).toBe('string');
  });

  it('takes LOG_LEVEL when no level is given', async () => {
    const out = await logOutput('{}', { LOG_LEVEL: 'debug' });
    expect(out.trim().split('\n').map((l) => JSON.parse(l).msg).sort()).toEqual(['dbg', 'hello']);
  });

  it('pretty-prints through pino-pretty when it is installed (a dev dependency)', async () => {
    const out = await logOutput("{ level: 'info', pretty: true }");
    expect(out).toMatch(/INFO.*hello/);
    expect(out.trim().startsWith('{')).toBe(false);
  });
});
