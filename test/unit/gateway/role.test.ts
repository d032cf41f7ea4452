// The gateway role refuses unusable set-ups with one clear error and leaves nothing behind:
// a corrupt state file (kept as it is), an interface that exists already, an interface name
// another namespace's wireguard-go holds, a missing wireguard-go. Real tools, in the test namespace.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../../src/config/index.js';
import { tableName } from '../../../src/gateway/firewall.js';
import { startGatewayRole } from '../../../src/gateway/index.js';
import { startNode } from '../../../src/node.js';
import { hasCommand, IN_NETNS } from '../../harness/env.js';
import { freePort, waitFor } from '../../harness/net.js';
import { Netns, uniqueName } from '../../harness/wg.js';

const ready = IN_NETNS && ['wireguard-go', 'wg', 'nft'].every(hasCommand);

describe.skipIf(!ready)('gateway role start-up errors', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'sixpn-gwrole-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const start = async (iface: string, extra = '') => {
    const file = join(dir, `${iface}.toml`);
    const port = await freePort();
    writeFileSync(file, `[catalog]\npath = ""\n[log]\nlevel = "silent"\n[wireguard]\nenabled = true\ninterface = "${iface}"\nlisten_port = ${port}\nstate_file = "${iface}.json"\n${extra}`);
    return startNode(loadConfig(file), ['gateway'], { gateway: startGatewayRole });
  };
  const tableExists = (iface: string): boolean => {
    try {
      execFileSync('nft', ['list', 'table', 'inet', tableName(iface)], { stdio: 'pipe' });
      return true;
    } catch {
      return false;
    }
  };

  it('refuses a corrupt state file and keeps it untouched (a new key would orphan every laptop)', async () => {
    const iface = uniqueName('sxr');
    writeFileSync(join(dir, `${iface}.json`), '{"private_key": "not a key"');
    await expect(start(iface)).rejects.toThrow(/state_file: .* is not valid JSON/);
    expect(readFileSync(join(dir, `${iface}.json`), 'utf8')).toBe('{"private_key": "not a key"');
    expect(tableExists(iface)).toBe(false);
  });

  it('refuses an interface that already exists and leaves it alone', async () => {
    const iface = uniqueName('sxr');
    execFileSync('ip', ['link', 'add', iface, 'type', 'bridge']);
    try {
      await expect(start(iface)).rejects.toThrow(new RegExp(`${iface} already exists`));
      expect(execFileSync('ip', ['-o', 'link', 'show', iface], { encoding: 'utf8' })).toContain(iface);
    } finally {
      execFileSync('ip', ['link', 'del', iface]);
    }
  });

  it("names the cause when another namespace's wireguard-go holds the interface name", async () => {
    const iface = uniqueName('sxr');
    const ns = await Netns.create('sxrn');
    const other = spawn('ip', ['netns', 'exec', ns.name, 'wireguard-go', '-f', iface], { stdio: 'ignore' });
    try {
      await waitFor(() => execFileSync('ls', ['/var/run/wireguard'], { encoding: 'utf8' }).includes(`${iface}.sock`), { what: 'the other socket' });
      const otherKey = execFileSync('wg', ['show', iface, 'private-key'], { encoding: 'utf8' });
      const otherPort = execFileSync('wg', ['show', iface, 'listen-port'], { encoding: 'utf8' });
      await expect(start(iface)).rejects.toThrow(/another wireguard-go already serves/);
      expect(tableExists(iface)).toBe(false);
      // The other namespace's interface was not touched: no key of ours was handed to it.
      expect(execFileSync('wg', ['show', iface, 'private-key'], { encoding: 'utf8' })).toBe(otherKey);
      expect(execFileSync('wg', ['show', iface, 'listen-port'], { encoding: 'utf8' })).toBe(otherPort);
    } finally {
      other.kill('SIGTERM');
      await ns.delete();
    }
  });

  it('reports a missing wireguard-go and removes the filter it had installed', async () => {
    const iface = uniqueName('sxr');
    await expect(start(iface, 'wireguard_go = "/nonexistent/wireguard-go"\n')).rejects.toThrow(/wireguard.wireguard_go: cannot run \/nonexistent\/wireguard-go/);
    expect(tableExists(iface)).toBe(false);
  });
});
