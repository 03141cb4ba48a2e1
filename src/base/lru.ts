// A bounded map that forgets the entry used longest ago: for memoising a pure function whose
// inputs repeat, with its memory capped whatever the inputs are.

export class LruCache<K, V> {
  readonly #entries = new Map<K, V>();
  readonly capacity: number;

  constructor(capacity: number) {
    this.capacity = capacity;
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

  /** The value held for `key`, or `compute()`'s, held from now on. */
  getOrCompute(key: K, compute: () => V): V {
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
