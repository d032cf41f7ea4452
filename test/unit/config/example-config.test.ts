/**
 * config/sixpn.example.toml is the reference: it must load, equal the defaults, and name every
 * key of every section (a key added to a module's schema without documenting it here fails).
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parse } from 'smol-toml';
import { z } from 'zod';
import { describe, expect, it } from 'vitest';
import { configSchema, loadConfig, parseConfig } from '../../../src/config/index.js';
import { ROOT } from '../../harness/env.js';

const FILE = resolve(ROOT, 'config/sixpn.example.toml');

/** Unwraps defaults/optionals/effects down to the object schema, if any. */
function objectOf(s: z.ZodTypeAny): z.AnyZodObject | null {
  let cur: z.ZodTypeAny = s;
  for (;;) {
    if (cur instanceof z.ZodObject) return cur;
    if (cur instanceof z.ZodDefault) cur = cur._def.innerType;
    else if (cur instanceof z.ZodOptional) cur = cur._def.innerType;
    else if (cur instanceof z.ZodEffects) cur = cur._def.schema;
    else return null;
  }
}

/** Dotted keys of nested sections (not arrays of tables: those are shown as examples). */
function schemaKeys(s: z.AnyZodObject, prefix = ''): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(s.shape as Record<string, z.ZodTypeAny>)) {
    const inner = objectOf(v);
    if (inner) out.push(...schemaKeys(inner, `${prefix}${k}.`));
    else out.push(`${prefix}${k}`);
  }
  return out;
}

describe('config/sixpn.example.toml', () => {
  it('loads and equals the built-in defaults', () => {
    const { config } = loadConfig(FILE, {});
    const defaults = parseConfig({}, {});
    expect(config.proxy).toEqual(defaults.proxy);
    expect(config.dns).toEqual(defaults.dns);
    expect(config.health).toEqual(defaults.health);
    expect(config.demo).toEqual(defaults.demo);
    expect(config.autostart).toEqual(defaults.autostart);
    expect(config.control).toEqual(defaults.control);
    expect(config.log).toEqual(defaults.log);
    expect({ ...config.host, state_dir: '', workdir: '' }).toEqual({ ...defaults.host, state_dir: '', workdir: '' });
  });

  it('names every key of every section (set, or shown commented out)', () => {
    const text = readFileSync(FILE, 'utf8');
    const raw = parse(text) as Record<string, Record<string, unknown>>;
    const seeds = new Set(['orgs', 'apps', 'machines', 'ips']);
    const missing: string[] = [];
    for (const key of schemaKeys(objectOf(configSchema)!)) {
      if (seeds.has(key)) {
        if (!new RegExp(`^# \\[\\[${key}\\]\\]`, 'm').test(text)) missing.push(key);
        continue;
      }
      const path = key.split('.');
      let v: unknown = raw;
      for (const p of path) v = (v as Record<string, unknown> | undefined)?.[p];
      const leaf = path.at(-1)!;
      if (v === undefined && !new RegExp(`^# ${leaf} = `, 'm').test(text) && !new RegExp(`^# \\[\\[${path.join('.')}\\]\\]`, 'm').test(text)) missing.push(key);
    }
    expect(missing).toEqual([]);
  });
});
