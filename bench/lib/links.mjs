// What the mesh and wireguard benches make their namespaces and links with: names unique to
// this process (an interface name has 15 characters at most; the pid keeps two runs, or a
// killed run's leftovers, apart), commands that throw with their stderr, and a poll whose
// check may throw, so that a command failing mid-setup ends the bench at once instead of as a
// timeout.
import { spawnSync } from 'node:child_process';
import { sleep } from '../../test/harness/spawn.mjs';

/** This run's tag: the pid in base 36. */
export const runTag = process.pid.toString(36);
let seq = 0;

/** `prefix` + this run's tag + a counter: a fresh namespace or interface name at each call. */
export const uniqueName = (prefix) => `${prefix}${runTag}${(seq++).toString(36)}`;

/** Runs `cmd` to its end (60 s at most) and returns its stdout; throws with its stderr if it fails. */
export function sh(cmd, args, input, env = process.env) {
  const r = spawnSync(cmd, args, { input, env, encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr || r.error}`);
  return r.stdout;
}

/** Polls `fn` every `every` ms until it returns a truthy value (resolved with it); `ms` is the deadline. */
export async function waitFor(fn, ms, what, every = 20) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(every);
  }
}
