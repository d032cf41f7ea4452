/**
 * `sixpn tokens create|list|revoke`: org tokens for the control API (flyctl's `fly tokens
 * create org`) and dashboard sessions. A new token is printed once, alone on stdout (so that
 * `TOKEN=$(sixpn tokens create --org acme)` works); sixpn keeps only its hash.
 */
import type { Token } from '../../catalog/types.js';
import { ValidationError } from '../../errors.js';
import { API_OPTIONS, need, type Command } from '../args.js';
import { seg } from '../client.js';
import { json, renderTable } from '../output.js';

type TokenView = Omit<Token, 'hash'>;

const day = (at: number): string => new Date(at).toISOString().slice(0, 16).replace('T', ' ');

export const tokenCommands: Command[] = [
  {
    words: ['tokens', 'create'],
    usage: 'sixpn tokens create --org ORG[,ORG...] [--expiry 30d] [--name NAME] [--json]',
    summary: 'Create an org token: it sees and changes only its orgs (printed once; only its hash is kept)',
    options: [...API_OPTIONS, 'json', 'org', 'expiry', 'name'],
    maxArgs: 0,
    async run(ctx) {
      const orgs = need(ctx.values, 'org', 'sixpn tokens create').split(',').filter((o) => o !== '');
      const body = { orgs, ...(ctx.values.expiry !== undefined ? { expiry: ctx.values.expiry } : {}), ...(ctx.values.name !== undefined ? { name: ctx.values.name } : {}) };
      const t = await (await ctx.client()).call<TokenView & { token: string }>('POST', '/v1/tokens', body);
      if (ctx.values.json) return void ctx.io.out(json(t));
      ctx.io.out(`${t.token}\n`);
      ctx.io.err(`Created org token ${JSON.stringify(t.name)} (id ${t.id}) for org ${t.orgs.join(', ')}, expires ${day(t.expires_at)} UTC.\nThis is the only time it is shown: sixpn keeps only its hash. Revoke it with: sixpn tokens revoke ${t.id}\n`);
    },
  },
  {
    words: ['tokens', 'list'],
    usage: 'sixpn tokens list [--org ORG] [--json]',
    summary: 'List org tokens and dashboard sessions (never their secrets)',
    options: [...API_OPTIONS, 'json', 'org'],
    maxArgs: 0,
    async run(ctx) {
      const q = ctx.values.org ? `?org=${seg(ctx.values.org)}` : '';
      const tokens = await (await ctx.client()).call<TokenView[]>('GET', `/v1/tokens${q}`);
      if (ctx.values.json) return void ctx.io.out(json(tokens));
      ctx.io.out(renderTable(['ID', 'KIND', 'NAME', 'ORGS', 'CREATED (UTC)', 'EXPIRES (UTC)'], tokens.map((t) => [t.id, t.kind, t.name, t.orgs.join(',') || '-', day(t.created_at), day(t.expires_at)])));
    },
  },
  {
    words: ['tokens', 'revoke'],
    usage: 'sixpn tokens revoke ID | --all-sessions',
    summary: 'Revoke a token (it stops working at once on every node), or every dashboard session',
    options: [...API_OPTIONS, 'all-sessions'],
    maxArgs: 1,
    async run(ctx) {
      const client = await ctx.client();
      if (ctx.values['all-sessions']) {
        if (ctx.args[0] !== undefined) throw new ValidationError(`give a token id or --all-sessions, not both (usage: ${this.usage})`);
        const r = await client.call<{ revoked: number }>('DELETE', '/v1/tokens?kind=dashboard');
        return void ctx.io.out(`Revoked ${r.revoked} dashboard session${r.revoked === 1 ? '' : 's'}\n`);
      }
      const id = ctx.args[0];
      if (id === undefined || id === '') throw new ValidationError(`missing token id (usage: ${this.usage})`);
      await client.call('DELETE', `/v1/tokens/${seg(id)}`);
      ctx.io.out(`Revoked token ${id}\n`);
    },
  },
];
