/**
 * Copy-on-write tables for the embedded store: a mutation writes into a Layer over the
 * committed maps, and only a layer whose file write succeeded is applied to them. So a failed
 * write (read-only filesystem, full disk) changes nothing, in memory either, and readers never
 * see a change that is not on disk yet.
 *
 * @example
 *   const d = new Layer(committed); d.set('acme', org);   // committed is untouched
 *   await writeFile(serialize(d)); d.applyTo(committed);  // only after the write
 */

/** What a layer reads through to: a Map, or another Layer. */
export interface MapRead<K, V> {
  get(key: K): V | undefined;
  has(key: K): boolean;
  entries(): IterableIterator<[K, V]>;
}

const GONE = Symbol('deleted');

/** A map's changes kept aside from its base; `values()` iterates as the base will after applyTo(). */
export class Layer<K, V> implements MapRead<K, V> {
  private readonly changes = new Map<K, V | typeof GONE>();

  constructor(private readonly base: MapRead<K, V>) {}

  get(key: K): V | undefined {
    const c = this.changes.get(key);
    if (c === GONE) return undefined;
    return c !== undefined ? c : this.base.get(key);
  }

  has(key: K): boolean {
    const c = this.changes.get(key);
    return c === GONE ? false : c !== undefined || this.base.has(key);
  }

  set(key: K, value: V): this {
    this.changes.set(key, value);
    return this;
  }

  delete(key: K): boolean {
    const had = this.has(key);
    this.changes.set(key, GONE);
    return had;
  }

  *entries(): IterableIterator<[K, V]> {
    for (const [k, v] of this.base.entries()) {
      const c = this.changes.get(k);
      if (c === undefined) yield [k, v];
      else if (c !== GONE) yield [k, c];
    }
    for (const [k, c] of this.changes) if (c !== GONE && !this.base.has(k)) yield [k, c];
  }

  *values(): IterableIterator<V> {
    for (const [, v] of this.entries()) yield v;
  }

  /** Writes the changes into the map (or layer) below. */
  applyTo(target: { set(key: K, value: V): unknown; delete(key: K): unknown }): void {
    for (const [k, c] of this.changes) {
      if (c === GONE) target.delete(k);
      else target.set(k, c);
    }
  }
}

/** A record of maps (the tables of a store). */
export type Tables<T> = { [P in keyof T]: Map<any, any> };

/** Layers over each of a record of maps, with the same keys. */
export type Layers<T extends Tables<T>> = {
  [P in keyof T]: T[P] extends Map<infer K, infer V> ? Layer<K, V> : never;
};

export function layersOver<T extends Tables<T>>(tables: T | Layers<T>): Layers<T> {
  const out: Record<string, Layer<unknown, unknown>> = {};
  for (const [name, table] of Object.entries(tables)) out[name] = new Layer(table as MapRead<unknown, unknown>);
  return out as Layers<T>;
}

export function applyLayers<T extends Tables<T>>(layers: Layers<T>, target: T | Layers<T>): void {
  for (const [name, layer] of Object.entries(layers) as [string, Layer<unknown, unknown>][]) {
    layer.applyTo((target as Record<string, Layer<unknown, unknown>>)[name]!);
  }
}
