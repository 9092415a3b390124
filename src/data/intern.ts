/** Interning of string ids to dense indices, straight from bytes (no string is built for an id seen before). */
import type { IdMap } from './types.js';

export const FNV_BASIS = 0x811c9dc5 | 0;
export const FNV_PRIME = 0x01000193;

export class ByteInterner {
  count = 0;
  private arena = new Uint8Array(1 << 16);
  private used = 0;
  private offsets = new Int32Array(1025); // id k is arena[offsets[k] .. offsets[k + 1])
  private hashes = new Int32Array(1024);
  private table = new Int32Array(4096).fill(-1); // open addressing: slot j holds (hash, id) at 2j, 2j + 1
  private mask = 2047;
  private last = -1; // the id returned last: files grouped by user repeat it row after row

  /** Dense 0-based index of the id bytes buf[s..e). */
  intern(buf: Uint8Array, s: number, e: number): number {
    const len = e - s;
    const arena = this.arena;
    const last = this.last;
    if (last >= 0) {
      const a = this.offsets[last];
      if (this.offsets[last + 1] - a === len) {
        let k = 0;
        while (k < len && arena[a + k] === buf[s + k]) k++;
        if (k === len) return last;
      }
    }
    let h = FNV_BASIS;
    for (let i = s; i < e; i++) h = Math.imul(h ^ buf[i], FNV_PRIME);
    return this.internHashed(buf, s, e, h);
  }

  /**
   * Like intern, for callers that computed h = FNV-1a of the bytes while scanning them (start from FNV_BASIS, then
   * h = Math.imul(h ^ byte, FNV_PRIME) per byte). Skips the last-id check.
   */
  internHashed(buf: Uint8Array, s: number, e: number, fnv: number): number {
    const len = e - s;
    const arena = this.arena;
    const h = fnv ^ (fnv >>> 15);
    const table = this.table;
    const mask = this.mask;
    let slot = h & mask;
    for (;;) {
      const id = table[2 * slot + 1];
      if (id < 0) break;
      if (table[2 * slot] === h) {
        const a = this.offsets[id];
        if (this.offsets[id + 1] - a === len) {
          let k = 0;
          while (k < len && arena[a + k] === buf[s + k]) k++;
          if (k === len) {
            this.last = id;
            return id;
          }
        }
      }
      slot = (slot + 1) & mask;
    }
    const id = this.insert(buf, s, e, h, slot);
    this.last = id;
    return id;
  }

  /** Interns a JavaScript string (for non-CSV sources). */
  internString(id: string): number {
    const bytes = Buffer.from(id, 'utf8');
    return this.intern(bytes, 0, bytes.length);
  }

  /** The interned ids as strings, in index order. */
  strings(): string[] {
    const text = Buffer.from(this.arena.buffer, this.arena.byteOffset, this.used);
    const out = new Array<string>(this.count);
    for (let k = 0; k < this.count; k++) out[k] = text.toString('utf8', this.offsets[k], this.offsets[k + 1]);
    return out;
  }

  private insert(buf: Uint8Array, s: number, e: number, h: number, slot: number): number {
    const id = this.count;
    if (id + 1 >= this.hashes.length) {
      const hashes = new Int32Array(this.hashes.length * 2);
      hashes.set(this.hashes);
      this.hashes = hashes;
      const offsets = new Int32Array(hashes.length + 1);
      offsets.set(this.offsets);
      this.offsets = offsets;
    }
    const len = e - s;
    if (this.used + len > this.arena.length) {
      const arena = new Uint8Array(Math.max(this.arena.length * 2, this.used + len));
      arena.set(this.arena.subarray(0, this.used));
      this.arena = arena;
    }
    const arena = this.arena;
    for (let k = 0, at = this.used; k < len; k++) arena[at + k] = buf[s + k];
    this.used += len;
    this.offsets[id + 1] = this.used;
    this.hashes[id] = h;
    this.table[2 * slot] = h;
    this.table[2 * slot + 1] = id;
    this.count = id + 1;
    if (this.count * 2 > this.mask + 1) this.rehash();
    return id;
  }

  private rehash(): void {
    const slots = (this.mask + 1) * 2;
    const table = new Int32Array(2 * slots).fill(-1);
    const mask = slots - 1;
    for (let id = 0; id < this.count; id++) {
      const h = this.hashes[id];
      let slot = h & mask;
      while (table[2 * slot + 1] >= 0) slot = (slot + 1) & mask;
      table[2 * slot] = h;
      table[2 * slot + 1] = id;
    }
    this.table = table;
    this.mask = mask;
  }
}

/**
 * An IdMap from ids in index order. With padding, ids[0] = '' is the padding index and is not in the map. The
 * index Map is built on first use (most pipelines only need ids).
 */
export function makeIdMap(ids: string[], padding: boolean): IdMap {
  const all = padding ? ['', ...ids] : ids;
  let index: Map<string, number> | null = null;
  return {
    ids: all,
    get index(): Map<string, number> {
      if (index === null) {
        index = new Map<string, number>();
        for (let k = padding ? 1 : 0; k < all.length; k++) index.set(all[k], k);
      }
      return index;
    },
  };
}
