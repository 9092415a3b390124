/**
 * Small seeded PRNG (splitmix32 state step + mulberry32-style output mix). Deterministic across platforms:
 * the same seed always gives the same stream. Not cryptographic.
 */
export class Random {
  private state: number;

  constructor(seed: number) {
    // Mix the seed so that nearby seeds (0, 1, 2, ...) give unrelated streams.
    this.state = hash32(seed >>> 0 || 0x9e3779b9);
  }

  /** Next unsigned 32-bit integer. */
  nextUint32(): number {
    this.state = (this.state + 0x9e3779b9) | 0;
    let z = this.state;
    z = Math.imul(z ^ (z >>> 16), 0x21f0aaad);
    z = Math.imul(z ^ (z >>> 15), 0x735a2d97);
    return (z ^ (z >>> 15)) >>> 0;
  }

  /** Uniform float in [0, 1). */
  nextFloat(): number {
    return this.nextUint32() / 4294967296;
  }

  /** Uniform integer in [0, n). n must be a positive integer <= 2^32. */
  nextInt(n: number): number {
    return Math.floor(this.nextFloat() * n);
  }

  /** Standard normal sample (Box-Muller). */
  nextGaussian(): number {
    let u = this.nextFloat();
    while (u === 0) u = this.nextFloat();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.nextFloat());
  }

  /** In-place Fisher-Yates shuffle; returns the same array. */
  shuffle<T extends { length: number; [i: number]: unknown }>(array: T): T {
    for (let i = array.length - 1; i > 0; i--) {
      const j = this.nextInt(i + 1);
      const tmp = array[i];
      array[i] = array[j];
      array[j] = tmp;
    }
    return array;
  }

  /** Index drawn from unnormalized non-negative weights[0..length). */
  nextWeighted(weights: ArrayLike<number>, total?: number): number {
    let sum = total;
    if (sum === undefined) {
      sum = 0;
      for (let i = 0; i < weights.length; i++) sum += weights[i];
    }
    let r = this.nextFloat() * sum;
    for (let i = 0; i < weights.length; i++) {
      r -= weights[i];
      if (r < 0) return i;
    }
    return weights.length - 1;
  }

  /** An independent generator derived from this one (for per-worker or per-stage streams). */
  fork(): Random {
    return new Random(this.nextUint32());
  }
}

/** 32-bit integer hash (the splitmix32 finalizer). */
export function hash32(x: number): number {
  let z = x | 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

/** Convenience: a seeded generator. */
export function createRandom(seed: number): Random {
  return new Random(seed);
}
