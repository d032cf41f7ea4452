/**
 * Shutdown must not depend on logging (issue 11 item 12): a node whose stdout is a pipe nobody
 * reads any more (`sixpn up | head`, a log shipper that died) still exits 0 on SIGTERM, at once,
 * with the pretty (worker thread) and the JSON logger, and whether stdout went away after the
 * ready line or before it. A node with nothing to serve yet does not exit on its own.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort, waitFor } from '../harness/net.js';
import { startSixpn } from '../harness/procs.js';

const dir = mkdtempSync(join(tmpdir(), 'sixpn-shutdown-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function config(pretty: boolean): Promise<{ file: string; url: string }> {
  const port = await freePort();
  const file = join(dir, `node-${port}.toml`);
  writeFileSync(
    file,
    `[catalog]\npath = ""\n[log]\nlevel = "info"\npretty = ${pretty}\n[control]\nlisten = "127.0.0.1:${port}"\ntoken = "test-token-0123456789"\n` +
      '[health]\nenabled = false\n[proxy]\nenabled = false\n[dns]\nenabled = false\n',
  );
  return { file, url: `http://127.0.0.1:${port}` };
}

/** A request that makes the node log a line (a refused one). */
async function poke(url: string): Promise<number> {
  const r = await request(`${url}/v1/orgs`, { headers: { authorization: 'Bearer wrong' } });
  await r.body.text();
  return r.statusCode;
}

describe('SIGTERM with a closed stdout', () => {
  for (const pretty of [true, false]) {
    it(`exits 0 at once when stdout closed after the ready line (${pretty ? 'pretty' : 'JSON'} logs)`, async () => {
      const { file, url } = await config(pretty);
      const p = startSixpn(['up', '--config', file]);
      await p.waitForLine(/sixpn ready/);
      p.child.stdout!.destroy();
      // Lines logged into the closed pipe before the signal.
      for (let i = 0; i < 3; i++) expect(await poke(url)).toBe(401);
      await new Promise((r) => setTimeout(r, 300));
      const t0 = Date.now();
      const code = await p.stop('SIGTERM', 15_000);
      expect({ code, ms: Date.now() - t0 < 3000 }).toEqual({ code: 0, ms: true });
    });
  }

  it('exits 0 when stdout closed before the ready line was written', async () => {
    const { file, url } = await config(true);
    const p = startSixpn(['up', '--config', file]);
    p.child.stdout!.destroy();
    await waitFor(async () => (await poke(url).catch(() => 0)) === 401, { timeoutMs: 15_000, what: 'the API to answer' });
    expect(p.child.exitCode).toBeNull();
    const t0 = Date.now();
    const code = await p.stop('SIGTERM', 15_000);
    expect({ code, ms: Date.now() - t0 < 3000 }).toEqual({ code: 0, ms: true });
  });
});

describe('a node with nothing to serve yet', () => {
  it('keeps running until SIGTERM (a proxy with an empty in-memory catalog, no API, no DNS)', async () => {
    const file = join(dir, 'idle-proxy.toml');
    writeFileSync(file, '[catalog]\npath = ""\n[control]\nenabled = false\n[health]\nenabled = false\n[dns]\nenabled = false\n');
    const p = startSixpn(['proxy', '--config', file]);
    await p.waitForLine(/sixpn ready/);
    await new Promise((r) => setTimeout(r, 1_000));
    expect(p.child.exitCode).toBeNull();
    expect(await p.stop('SIGTERM', 15_000)).toBe(0);
  });
});
