/**
 * A set of strings held in a few typed arrays instead of one JS string and hash-table entry per string: the live
 * catalog's ids (catalog.ts). At 1M ids a Map<string, object> kept about 70 MB of small objects on the service's
 * main thread, all of which every full garbage collection marks; here 1M ids of 7 characters cost about 28 MB of
 * array buffers (outside the JS heap, never traced by the collector): the ids' bytes, one int per id (where its bytes
 * start) and an open-addressing table of 4 to 8 ints per id (2 to 4 slots of a hash and a key).
 *
 * Each distinct string gets a key 0, 1, 2, ... in the order it was added; keys are never removed. The bytes are the
 * string's UTF-16 code units in generalized UTF-8 (WTF-8: a lone surrogate is written as the 3 bytes of its code
 * point), so that every JS string, valid UTF-16 or not, has exactly one encoding and comes back unchanged.
 */
import { randomInt } from 'node:crypto';
import { GROWTH } from '../util/growable.js';
import { hash32 } from '../util/random.js';

/** Most ids are ASCII: decoded with Buffer's latin1 path, the rest by `decode`. */
const ASCII = 0x80;

export class IdTable {
  /** The ids' bytes, back to back: key k at starts[k] .. starts[k + 1] (both with spare room at the end). */
  private bytes: Buffer;
  private starts: Int32Array;
  /**
   * Open addressing with linear probing, a power of 2 slots, at most half full: slot s is (hash, key + 1) at 2s and
   * 2s + 1, key + 1 = 0 when empty. The hash next to the key: a probe reads one cache line before the id's bytes.
   */
  private slots: Int32Array;
  size = 0;

  /**
   * expected: how many ids to make room for (it grows beyond as needed). seed: of the hash, random per table by
   * default, as V8 seeds its own string hashes, so that ids crafted to collide in one process do not collide in
   * another (only the slots depend on it: keys and answers do not).
   */
  constructor(
    expected = 0,
    private readonly seed = randomInt(2 ** 32),
  ) {
    // Room for `expected` ids of up to 8 bytes; beyond, they grow by GROWTH.
    this.bytes = Buffer.alloc(Math.max(64, expected * 8));
    this.starts = new Int32Array(Math.max(64, expected + 1));
    let slots = 64;
    while (slots < 2 * expected) slots *= 2;
    this.slots = new Int32Array(2 * slots);
  }

  /** Bytes held by the table (its array buffers). */
  get byteSize(): number {
    return this.bytes.length + this.starts.byteLength + this.slots.byteLength;
  }

  /** The key of `id`, or -1. */
  find(id: string): number {
    const hash = hashId(id, this.seed);
    const slots = this.slots;
    const mask = slots.length / 2 - 1;
    for (let s = hash & mask; ; s = (s + 1) & mask) {
      const entry = slots[2 * s + 1];
      if (entry === 0) return -1;
      if (slots[2 * s] === hash && this.equals(entry - 1, id)) return entry - 1;
    }
  }

  /** The key of `id`, added when new. */
  add(id: string): number {
    const hash = hashId(id, this.seed);
    const mask = this.slots.length / 2 - 1;
    let s = hash & mask;
    for (; ; s = (s + 1) & mask) {
      const entry = this.slots[2 * s + 1];
      if (entry === 0) break;
      if (this.slots[2 * s] === hash && this.equals(entry - 1, id)) return entry - 1;
    }
    const key = this.size;
    const start = this.starts[key];
    const end = start + encodedLength(id);
    if (end > 0x7fffffff) throw new Error('IdTable: the ids take more than 2 GiB (offsets are 32-bit)');
    if (end > this.bytes.length) {
      const bytes = Buffer.alloc(Math.max(end, Math.ceil(this.bytes.length * GROWTH)));
      bytes.set(this.bytes);
      this.bytes = bytes;
    }
    encode(id, this.bytes, start);
    if (key + 2 > this.starts.length) {
      const starts = new Int32Array(Math.ceil(this.starts.length * GROWTH) + 1);
      starts.set(this.starts);
      this.starts = starts;
    }
    this.starts[key + 1] = end;
    this.size++;
    this.slots[2 * s] = hash;
    this.slots[2 * s + 1] = key + 1;
    if (4 * this.size > this.slots.length) this.rehash(); // more than half of the slots used
    return key;
  }

  /** The string of a key. */
  id(key: number): string {
    const start = this.starts[key];
    const end = this.starts[key + 1];
    for (let p = start; p < end; p++) if (this.bytes[p] >= ASCII) return decode(this.bytes, start, end);
    return this.bytes.toString('latin1', start, end);
  }

  /** Twice as many slots, each used one moved to its place among them. */
  private rehash(): void {
    const old = this.slots;
    const slots = new Int32Array(2 * old.length);
    const mask = old.length - 1; // old.length / 2 slots before, old.length now
    for (let t = 0; t < old.length; t += 2) {
      if (old[t + 1] === 0) continue;
      let s = old[t] & mask;
      while (slots[2 * s + 1] !== 0) s = (s + 1) & mask;
      slots[2 * s] = old[t];
      slots[2 * s + 1] = old[t + 1];
    }
    this.slots = slots;
  }

  /** Whether key's bytes are the encoding of `id` (compared as it is encoded, without building it). */
  private equals(key: number, id: string): boolean {
    const bytes = this.bytes;
    const end = this.starts[key + 1];
    let p = this.starts[key];
    for (let i = 0; i < id.length; i++) {
      let c = id.charCodeAt(i);
      if (c < 0x80) {
        if (p >= end || bytes[p++] !== c) return false;
        continue;
      }
      if ((c & 0xfc00) === 0xd800 && i + 1 < id.length && (id.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
        c = 0x10000 + ((c - 0xd800) << 10) + (id.charCodeAt(++i) - 0xdc00);
      }
      const n = c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
      if (p + n > end) return false;
      if (n === 2) {
        if (bytes[p] !== (0xc0 | (c >> 6)) || bytes[p + 1] !== (0x80 | (c & 0x3f))) return false;
      } else if (n === 3) {
        if (
          bytes[p] !== (0xe0 | (c >> 12)) ||
          bytes[p + 1] !== (0x80 | ((c >> 6) & 0x3f)) ||
          bytes[p + 2] !== (0x80 | (c & 0x3f))
        )
          return false;
      } else if (
        bytes[p] !== (0xf0 | (c >> 18)) ||
        bytes[p + 1] !== (0x80 | ((c >> 12) & 0x3f)) ||
        bytes[p + 2] !== (0x80 | ((c >> 6) & 0x3f)) ||
        bytes[p + 3] !== (0x80 | (c & 0x3f))
      )
        return false;
      p += n;
    }
    return p === end;
  }
}

/**
 * FNV-1a over the UTF-16 code units from a seeded start, then a finalizer that spreads the low bits (the slot is
 * hash & mask). Not a keyed PRF: the seed only keeps collisions found for one process from carrying to another.
 */
export function hashId(id: string, seed: number): number {
  let h = 0x811c9dc5 ^ seed;
  for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 0x01000193);
  return hash32(h) | 0;
}

/** Bytes of the WTF-8 encoding of `id` (a surrogate pair is one 4-byte code point, a lone surrogate 3 bytes). */
function encodedLength(id: string): number {
  let n = 0;
  for (let i = 0; i < id.length; i++) {
    const c = id.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if ((c & 0xfc00) === 0xd800 && i + 1 < id.length && (id.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}

function encode(id: string, bytes: Uint8Array, at: number): void {
  let p = at;
  for (let i = 0; i < id.length; i++) {
    let c = id.charCodeAt(i);
    if (c < 0x80) {
      bytes[p++] = c;
      continue;
    }
    if ((c & 0xfc00) === 0xd800 && i + 1 < id.length && (id.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      c = 0x10000 + ((c - 0xd800) << 10) + (id.charCodeAt(++i) - 0xdc00);
    }
    if (c < 0x800) {
      bytes[p++] = 0xc0 | (c >> 6);
    } else if (c < 0x10000) {
      bytes[p++] = 0xe0 | (c >> 12);
      bytes[p++] = 0x80 | ((c >> 6) & 0x3f);
    } else {
      bytes[p++] = 0xf0 | (c >> 18);
      bytes[p++] = 0x80 | ((c >> 12) & 0x3f);
      bytes[p++] = 0x80 | ((c >> 6) & 0x3f);
    }
    bytes[p++] = 0x80 | (c & 0x3f);
  }
}

/** The string of bytes written by `encode` (lone surrogates included, which TextDecoder would replace). */
function decode(bytes: Uint8Array, start: number, end: number): string {
  const units: number[] = [];
  for (let p = start; p < end;) {
    const b = bytes[p];
    let c: number;
    if (b < 0x80) {
      c = b;
      p += 1;
    } else if (b < 0xe0) {
      c = ((b & 0x1f) << 6) | (bytes[p + 1] & 0x3f);
      p += 2;
    } else if (b < 0xf0) {
      c = ((b & 0x0f) << 12) | ((bytes[p + 1] & 0x3f) << 6) | (bytes[p + 2] & 0x3f);
      p += 3;
    } else {
      c =
        ((b & 0x07) << 18) |
        ((bytes[p + 1] & 0x3f) << 12) |
        ((bytes[p + 2] & 0x3f) << 6) |
        (bytes[p + 3] & 0x3f);
      p += 4;
    }
    if (c >= 0x10000) units.push(0xd800 + ((c - 0x10000) >> 10), 0xdc00 + ((c - 0x10000) & 0x3ff));
    else units.push(c);
  }
  return String.fromCharCode(...units);
}
