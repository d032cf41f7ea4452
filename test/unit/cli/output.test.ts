/**
 * CLI output helpers: flyctl-style table layout, relative times, byte counts.
 */
import { describe, expect, it } from 'vitest';
import { ago, bytes, renderTable } from '../../../src/cli/output.js';

describe('renderTable', () => {
  it('pads every column but the last and joins with tabs', () => {
    const t = renderTable(['VERSION', 'IP', 'TYPE'], [['v6', 'fdaa:0:18:0:1::3', 'private']]);
    expect(t).toBe('VERSION\tIP              \tTYPE\nv6     \tfdaa:0:18:0:1::3\tprivate\n');
  });

  it('prints only headers for no rows', () => {
    expect(renderTable(['A', 'B'], [])).toBe('A\tB\n');
  });
});

describe('ago', () => {
  const now = 1_000_000_000;
  it.each([
    [0, 'just now'],
    [9_000, 'just now'],
    [42_000, '42s ago'],
    [5 * 60_000, '5m ago'],
    [3 * 3_600_000, '3h ago'],
    [2 * 86_400_000, '2d ago'],
  ])('%i ms ago is %s', (d, text) => {
    expect(ago(now - d, now)).toBe(text);
  });
});

describe('bytes', () => {
  it('uses binary units', () => {
    expect(bytes(0)).toBe('0 B');
    expect(bytes(1023)).toBe('1023 B');
    expect(bytes(1536)).toBe('1.5 KiB');
    expect(bytes(100 * 1024 * 1024)).toBe('100.0 MiB');
  });
});
