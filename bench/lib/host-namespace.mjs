// The host namespace the host and autostart benches run in: made inside the test namespace
// (`ip netns add`) and set up like a 6PN host (lo up, fdaa::/16 local, non-local bind,
// forwarding), with the bench re-run inside it (network namespace only, through nsenter). The
// outer run deletes it, and every machine namespace the host agent made there, whatever happens.
import { execFileSync, spawn } from 'node:child_process';
import { readdirSync, rmSync } from 'node:fs';

const sh = (cmd, args) => execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString();

/** SIGKILLs every process left in namespace `name` (a machine the agent did not get to stop). */
function killAll(name) {
  for (const pid of sh('ip', ['netns', 'pids', name]).split(/\s+/).filter(Boolean)) {
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch {}
  }
}

/**
 * Outside the host namespace (`${envStem}_NS` unset): makes it, re-runs `script` inside it and
 * exits with that run's code once everything is deleted; it never returns. Inside: returns the
 * prefix the host agent's machine namespaces must carry (its `netns_prefix`), which is how the
 * outer run finds them. `nsStem` and `prefixStem` start the two names; the pid ends them, so
 * that a leftover of a killed run never collides with the next.
 */
export async function enterHostNamespace({ script, envStem, nsStem, prefixStem }) {
  if (process.env[`${envStem}_NS`]) return process.env[`${envStem}_PREFIX`];
  const ns = `${nsStem}${process.pid.toString(36)}`;
  const prefix = `${prefixStem}${process.pid.toString(36)}-`;
  sh('ip', ['netns', 'add', ns]);
  let code = 1;
  try {
    sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    sh('ip', ['-n', ns, '-6', 'route', 'add', 'local', 'fdaa::/16', 'dev', 'lo']);
    for (const s of ['net.ipv6.ip_nonlocal_bind=1', 'net.ipv6.conf.all.forwarding=1']) sh('ip', ['netns', 'exec', ns, 'sysctl', '-qw', s]);
    const child = spawn('nsenter', [`--net=/run/netns/${ns}`, process.execPath, script], { stdio: 'inherit', env: { ...process.env, [`${envStem}_NS`]: ns, [`${envStem}_PREFIX`]: prefix } });
    code = await new Promise((r) => child.on('exit', (c) => r(c ?? 1)));
  } finally {
    for (const n of readdirSync('/run/netns').filter((x) => x.startsWith(prefix))) {
      killAll(n);
      try {
        sh('ip', ['netns', 'del', n]);
      } catch {}
      rmSync(`/etc/netns/${n}`, { recursive: true, force: true });
    }
    killAll(ns);
    sh('ip', ['netns', 'del', ns]);
  }
  process.exit(code);
}
