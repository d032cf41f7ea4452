/**
 * `sixpn wireguard create|list|remove`: laptop peers of an org's private network.
 *
 * `create` makes the key pair here and sends only the public key; the private key exists in
 * the written config file and nowhere else, which is why it cannot be recovered.
 */
import { existsSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { peerNameSchema, type Peer } from '../../catalog/types.js';
import { ConflictError, SixpnError, ValidationError } from '../../errors.js';
import { defaultPeerName, generateKeyPair, renderPeerConfig } from '../../gateway/keys.js';
import { API_OPTIONS, type Command, type CommandContext } from '../args.js';
import { seg } from '../client.js';
import { ago, bytes, json, renderTable } from '../output.js';

interface CreatedPeer {
  peer: Peer;
  gateway: { public_key: string; endpoint: string };
  dns: string;
  allowed_ips: string;
}

type PeerWithStatus = Peer & { latest_handshake?: number; rx_bytes?: number; tx_bytes?: number; endpoint?: string };

/**
 * Fills ORG, REGION and NAME in that order: from --org/--region when given, else from the
 * positional arguments, so `create acme ams`, `create --org acme ams` and flags alone all work.
 */
function slots<K extends 'org' | 'region' | 'name'>(ctx: CommandContext, names: K[]): Record<K, string | undefined> {
  const rest = [...ctx.args];
  const out = {} as Record<K, string | undefined>;
  for (const n of names) out[n] = (n === 'name' ? undefined : ctx.values[n as 'org' | 'region']) ?? rest.shift();
  return out;
}

function required(v: string | undefined, what: string, usage: string): string {
  if (v === undefined || v === '') throw new ValidationError(`missing ${what} (usage: ${usage})`);
  return v;
}

/** Checks a peer name here, before any key is made or anything registered. */
function checkPeerName(name: string): void {
  const r = peerNameSchema.safeParse(name);
  if (!r.success) throw new ValidationError(`invalid wireguard peer name ${JSON.stringify(name)}: ${r.error.issues[0]!.message}`);
}

const WARNING = [
  '!! The private key was generated on this machine and written only to the file above.',
  '!! It cannot be recovered: sixpn never stored it. If you lose the file, remove the peer',
  '!! (sixpn wireguard remove) and create a new one.',
].join('\n');

export const wireguardCommands: Command[] = [
  {
    words: ['wireguard', 'create'],
    usage: 'sixpn wireguard create ORG REGION [NAME] [--output FILE]',
    summary: 'Create a WireGuard peer: key pair made locally, config written to NAME.conf',
    options: [...API_OPTIONS, 'org', 'region', 'output'],
    maxArgs: 3,
    async run(ctx) {
      const s = slots(ctx, ['org', 'region', 'name']);
      const org = required(s.org, 'org', this.usage);
      const region = required(s.region, 'region', this.usage);
      const given = s.name;
      if (given !== undefined) checkPeerName(given);
      const client = await ctx.client();
      const keys = generateKeyPair();
      let created: CreatedPeer | undefined;
      let file = '';
      // A generated name may already exist in the org: draw another a few times.
      for (let attempt = 0; !created; attempt++) {
        const name = given ?? defaultPeerName();
        file = resolve(ctx.values.output ?? `${name}.conf`);
        if (existsSync(file)) throw new ConflictError(`${file} already exists; choose another --output (nothing was created)`);
        try {
          created = await client.call<CreatedPeer>('POST', `/v1/orgs/${seg(org)}/wireguard`, { name, region, public_key: keys.public_key });
        } catch (err) {
          if (given !== undefined || attempt >= 4 || !(err instanceof SixpnError) || err.code !== 'SIXPN_CONFLICT') throw err;
        }
      }
      const { peer } = created;
      const text = renderPeerConfig({
        privateKey: keys.private_key,
        address: peer.address,
        dns: created.dns,
        gatewayPublicKey: created.gateway.public_key,
        allowedIps: created.allowed_ips,
        endpoint: created.gateway.endpoint,
      });
      try {
        writeFileSync(file, text, { mode: 0o600, flag: 'wx' });
      } catch (err) {
        // Without the file the key is lost: take the peer out again rather than leave a dead one.
        await client.call('DELETE', `/v1/orgs/${seg(org)}/wireguard/${seg(peer.name)}`).catch(() => undefined);
        throw new ValidationError(`cannot write ${file}: ${(err as Error).message}; the peer was removed again`);
      }
      ctx.io.out(
        `Created WireGuard peer ${peer.name} in org ${peer.org} (${peer.region}), address ${peer.address}\n` +
          `Wrote ${file}\n${WARNING}\n` +
          `Bring it up with: wg-quick up ${file}\n`,
      );
    },
  },
  {
    words: ['wireguard', 'list'],
    usage: 'sixpn wireguard list ORG [--json]',
    summary: "List an org's WireGuard peers with handshake and traffic (when the gateway runs here)",
    options: [...API_OPTIONS, 'json', 'org'],
    maxArgs: 1,
    async run(ctx) {
      const org = required(slots(ctx, ['org']).org, 'org', this.usage);
      const peers = await (await ctx.client()).call<PeerWithStatus[]>('GET', `/v1/orgs/${seg(org)}/wireguard`);
      if (ctx.values.json) return void ctx.io.out(json(peers));
      ctx.io.out(
        renderTable(
          ['NAME', 'REGION', 'ADDRESS', 'PUBLIC KEY', 'HANDSHAKE', 'RX', 'TX'],
          peers.map((p) => [
            p.name,
            p.region,
            p.address,
            p.public_key,
            p.latest_handshake === undefined ? '-' : p.latest_handshake === 0 ? 'never' : ago(p.latest_handshake * 1000),
            p.rx_bytes === undefined ? '-' : bytes(p.rx_bytes),
            p.tx_bytes === undefined ? '-' : bytes(p.tx_bytes),
          ]),
        ),
      );
    },
  },
  {
    words: ['wireguard', 'remove'],
    usage: 'sixpn wireguard remove ORG NAME',
    summary: 'Remove a WireGuard peer; the gateway drops it within a second',
    options: [...API_OPTIONS, 'org'],
    maxArgs: 2,
    async run(ctx) {
      const s = slots(ctx, ['org', 'name']);
      const org = required(s.org, 'org', this.usage);
      const name = required(s.name, 'peer name', this.usage);
      await (await ctx.client()).call('DELETE', `/v1/orgs/${seg(org)}/wireguard/${seg(name)}`);
      ctx.io.out(`Removed WireGuard peer ${name} from org ${org}\n`);
    },
  },
];
