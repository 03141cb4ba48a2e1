// A bounded map that forgets the entry used longest ago: for memoising a pure function whose
// inputs repeat, with its memory capped whatever the inputs are.

export class LruCache<K, V> {
  readonly #entries = new Map<K, V>();
  readonly capacity: number;
  /** A string key longer than this is computed every time, never held. */
  readonly maxKeyLength: number;

  constructor(capacity: number, options: { readonly maxKeyLength?: number } = {}) {
    this.capacity = capacity;
    this.maxKeyLength = options.maxKeyLength ?? Number.POSITIVE_INFINITY;
  }

  get size(): number {
    return this.#entries.size;
  }

  get(key: K): V | undefined {
    const value = this.#entries.get(key);
    if (value !== undefined) {
      // Re-inserted: a Map iterates in insertion order, so the first key is the oldest used.
      this.#entries.delete(key);
      this.#entries.set(key, value);
    }
    return value;
  }

  /** The value held for `key`, or `compute()`'s, held from now on (unless the key is too long). */
  getOrCompute(key: K, compute: () => V): V {
    if (typeof key === 'string' && key.length > this.maxKeyLength) return compute();
    let value = this.get(key);
    if (value === undefined) {
      value = compute();
      this.set(key, value);
    }
    return value;
  }

  set(key: K, value: V): void {
    this.#entries.delete(key);
    this.#entries.set(key, value);
    if (this.#entries.size > this.capacity) {
      const oldest = this.#entries.keys().next();
      if (oldest.done !== true) this.#entries.delete(oldest.value);
    }
  }
}
