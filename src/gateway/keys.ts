/**
 * WireGuard keys and peer config text, shared by `sixpn wireguard create` (which makes a peer's
 * key pair on the laptop and writes its config) and the gateway (which keeps its own key pair
 * in a 0600 state file). Private keys never leave this module's callers' machines: the control
 * API only ever receives public keys.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { link, mkdir, open, readFile, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { ConfigError } from '../errors.js';

export interface KeyPair {
  /** Base64 of the 32-byte X25519 private key, as `wg genkey` prints it. */
  private_key: string;
  /** Base64 of the 32-byte X25519 public key, as `wg pubkey` prints it. */
  public_key: string;
}

const KEY_RE = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;
/** DER header of a PKCS#8 X25519 private key; the 32 raw key bytes follow it. */
const PKCS8_X25519_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');

/** True for the base64 text of a 32-byte WireGuard key. */
export function isWireguardKey(text: string): boolean {
  return KEY_RE.test(text);
}

/** A fresh X25519 key pair, generated locally. */
export function generateKeyPair(): KeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('x25519');
  const d = privateKey.export({ format: 'jwk' }).d;
  const x = publicKey.export({ format: 'jwk' }).x;
  if (!d || !x) throw new Error('node:crypto returned an X25519 key without its raw bytes');
  return { private_key: Buffer.from(d, 'base64url').toString('base64'), public_key: Buffer.from(x, 'base64url').toString('base64') };
}

/** The public key of a base64 private key (what `wg pubkey` computes). */
export function publicKeyOf(privateKey: string): string {
  if (!isWireguardKey(privateKey)) throw new RangeError('not a base64 WireGuard private key');
  const der = Buffer.concat([PKCS8_X25519_PREFIX, Buffer.from(privateKey, 'base64')]);
  const pub = createPublicKey(createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }));
  const spki = pub.export({ format: 'der', type: 'spki' });
  return spki.subarray(spki.length - 32).toString('base64');
}

/** Longest WireGuard peer name: it becomes the laptop's Linux interface name (IFNAMSIZ - 1). */
export const MAX_PEER_NAME = 15;
const DEFAULT_PREFIX = 'interactive-';

/** `interactive-<3 random base36 chars>`: unique enough per org, and 15 characters long. */
export function defaultPeerName(random: (n: number) => Buffer = randomBytes): string {
  const room = MAX_PEER_NAME - DEFAULT_PREFIX.length;
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  let suffix = '';
  for (const b of random(room)) suffix += alphabet[b % alphabet.length];
  return DEFAULT_PREFIX + suffix;
}

export interface PeerConfigInput {
  privateKey: string;
  /** The peer's own address (without prefix length; the /120 is added). */
  address: string;
  /** `<org prefix>::3`. */
  dns: string;
  gatewayPublicKey: string;
  /** The org's /48. */
  allowedIps: string;
  /** host:port of the gateway. */
  endpoint: string;
  keepaliveSeconds?: number;
}

/** The wg-quick config a laptop brings up with `wg-quick up <name>.conf`. */
export function renderPeerConfig(c: PeerConfigInput): string {
  return [
    '[Interface]',
    `PrivateKey = ${c.privateKey}`,
    `Address = ${c.address}/120`,
    `DNS = ${c.dns}`,
    '',
    '[Peer]',
    `PublicKey = ${c.gatewayPublicKey}`,
    `AllowedIPs = ${c.allowedIps}`,
    `Endpoint = ${c.endpoint}`,
    `PersistentKeepalive = ${c.keepaliveSeconds ?? 15}`,
    '',
  ].join('\n');
}

/** Reads a gateway state file; throws ConfigError naming the file when it is unusable. */
function parseGatewayKeys(text: string, path: string, key = 'wireguard.state_file'): KeyPair {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new ConfigError(`${key}: ${path} is not valid JSON; fix or move it away (a new key would break every peer config)`);
  }
  const r = raw as Partial<KeyPair> | null;
  if (!r || typeof r.private_key !== 'string' || !isWireguardKey(r.private_key)) {
    throw new ConfigError(`${key}: ${path} has no valid private_key`);
  }
  const pub = publicKeyOf(r.private_key);
  if (r.public_key !== undefined && r.public_key !== pub) {
    throw new ConfigError(`${key}: ${path} has a public_key that does not belong to its private_key`);
  }
  return { private_key: r.private_key, public_key: pub };
}

/**
 * The gateway's key pair from its state file, created (mode 0600, folder included) when the
 * file does not exist. Creation is exclusive, so a control API and a gateway starting together
 * on one node end up with the same key.
 */
export async function loadOrCreateGatewayKeys(path: string, key = 'wireguard.state_file'): Promise<KeyPair> {
  try {
    return parseGatewayKeys(await readFile(path, 'utf8'), path, key);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      if (err instanceof ConfigError) throw err;
      throw new ConfigError(`${key}: cannot read ${path}: ${(err as Error).message}`, { cause: err });
    }
  }
  const keys = generateKeyPair();
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    const fh = await open(tmp, 'wx', 0o600);
    try {
      await fh.writeFile(`${JSON.stringify(keys, null, 2)}\n`);
      await fh.sync();
    } finally {
      await fh.close();
    }
    // link() never replaces an existing file, so a reader sees no file or a whole one.
    await link(tmp, path);
    return keys;
  } catch (err) {
    // Someone else created it between our read and our create: theirs wins.
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return parseGatewayKeys(await readFile(path, 'utf8'), path, key);
    throw new ConfigError(`${key}: cannot create ${path}: ${(err as Error).message}`, { cause: err });
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
}
