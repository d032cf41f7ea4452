import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ERROR_CLASSES, exitCodeFor, SixpnError } from '../../src/errors.js';

const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');

describe('error vocabulary', () => {
  it.each(ERROR_CLASSES.map((C) => [new C('x').code, C] as const))('%s is documented in README with its status and exit code', (_code, C) => {
    const err = new C('something went wrong', { cause: new Error('inner') });
    expect(err).toBeInstanceOf(SixpnError);
    expect(err.name).toBe(C.name);
    expect((err.cause as Error).message).toBe('inner');
    const row = readme.split('\n').find((l) => l.startsWith(`| \`${err.code}\``));
    expect(row, `README error table lacks ${err.code}`).toBeDefined();
    const cells = row!.split('|').map((c) => c.trim());
    expect(Number(cells[2])).toBe(err.status);
    expect(Number(cells[3])).toBe(exitCodeFor(err));
  });

  it('gives unknown errors exit code 1', () => {
    expect(exitCodeFor(new Error('x'))).toBe(1);
  });
});
