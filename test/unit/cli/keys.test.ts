/**
 * WireGuard key and config helpers (src/gateway/keys.ts): X25519 against the RFC 7748 vector,
 * config text, default names, and the gateway state file's create-once behaviour.
 */
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { peerNameSchema } from '../../../src/catalog/types.js';
import { ConfigError } from '../../../src/errors.js';
import { defaultPeerName, generateKeyPair, isWireguardKey, loadOrCreateGatewayKeys, publicKeyOf, renderPeerConfig } from '../../../src/gateway/keys.js';

const hex64 = (h: string): string => Buffer.from(h, 'hex').toString('base64');

describe('keys', () => {
  it('derives the RFC 7748 X25519 public key', () => {
    const priv = hex64('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a');
    expect(publicKeyOf(priv)).toBe(hex64('8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a'));
  });

  it('generates pairs whose public key matches the private key', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const k = generateKeyPair();
      expect(isWireguardKey(k.private_key)).toBe(true);
      expect(isWireguardKey(k.public_key)).toBe(true);
      expect(publicKeyOf(k.private_key)).toBe(k.public_key);
      seen.add(k.private_key);
    }
    expect(seen.size).toBe(20);
  });

  it('rejects text that is not a key', () => {
    expect(isWireguardKey('abc')).toBe(false);
    expect(isWireguardKey(`${'A'.repeat(43)}=`)).toBe(true);
    expect(isWireguardKey(`${'A'.repeat(42)}B=`)).toBe(false);
    expect(() => publicKeyOf('nope')).toThrow(RangeError);
  });
});

describe('peer names and config', () => {
  it('default names are interactive-<3 chars>, 15 characters, valid peer names', () => {
    for (let i = 0; i < 50; i++) {
      const n = defaultPeerName();
      expect(n).toMatch(/^interactive-[a-z0-9]{3}$/);
      expect(peerNameSchema.safeParse(n).success).toBe(true);
    }
    expect(defaultPeerName(() => Buffer.from([0, 1, 35]))).toBe('interactive-ab9');
  });

  it('renders a wg-quick config', () => {
    const text = renderPeerConfig({
      privateKey: 'P'.repeat(43) + '=',
      address: 'fdaa:0:18:a7b:d6b:0:a:2',
      dns: 'fdaa:0:18::3',
      gatewayPublicKey: 'G'.repeat(43) + '=',
      allowedIps: 'fdaa:0:18::/48',
      endpoint: 'gw.example.net:51820',
    });
    expect(text).toBe(
      `[Interface]\nPrivateKey = ${'P'.repeat(43)}=\nAddress = fdaa:0:18:a7b:d6b:0:a:2/120\nDNS = fdaa:0:18::3\n\n` +
        `[Peer]\nPublicKey = ${'G'.repeat(43)}=\nAllowedIPs = fdaa:0:18::/48\nEndpoint = gw.example.net:51820\nPersistentKeepalive = 15\n`,
    );
  });
});

describe('gateway state file', () => {
  let dir = '';
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('creates the file once with mode 0600 and reads it back after', async () => {
    dir = mkdtempSync(join(tmpdir(), 'sixpn-keys-'));
    const file = join(dir, 'sub', 'gateway.json');
    const a = await loadOrCreateGatewayKeys(file);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(publicKeyOf(a.private_key)).toBe(a.public_key);
    expect(await loadOrCreateGatewayKeys(file)).toEqual(a);
  });

  it('gives every concurrent caller the same key', async () => {
    dir = mkdtempSync(join(tmpdir(), 'sixpn-keys-'));
    const file = join(dir, 'gateway.json');
    const all = await Promise.all(Array.from({ length: 8 }, () => loadOrCreateGatewayKeys(file)));
    expect(new Set(all.map((k) => k.public_key)).size).toBe(1);
    expect(JSON.parse(readFileSync(file, 'utf8')).public_key).toBe(all[0]!.public_key);
  });

  it('refuses a corrupt or inconsistent file instead of replacing the key', async () => {
    dir = mkdtempSync(join(tmpdir(), 'sixpn-keys-'));
    const file = join(dir, 'gateway.json');
    writeFileSync(file, '{not json');
    await expect(loadOrCreateGatewayKeys(file)).rejects.toThrow(ConfigError);
    expect(readFileSync(file, 'utf8')).toBe('{not json');
    const k = generateKeyPair();
    writeFileSync(file, JSON.stringify({ private_key: k.private_key, public_key: generateKeyPair().public_key }));
    await expect(loadOrCreateGatewayKeys(file)).rejects.toThrow(/does not belong/);
  });
});
