/**
 * The built-in synthetic dataset: a catalog whose item texts come from latent topics, and users whose sequences
 * follow a Markov chain over topics with item-level popularity, on a timeline where items keep being introduced.
 *
 * Signals, by construction:
 *  - content: an item's title/description draw mostly from its topic's words (plus words shared by all topics and a
 *    little noise), so content similarity identifies the topic; the next item stays in the same topic with
 *    probability `stayProbability`;
 *  - order beyond content: with probability `successorProbability` the next topic is the current topic's fixed
 *    successor (a random permutation with no fixed point, so A -> B is not expressed by A's content);
 *  - cold items: a share of the items is introduced during the timeline, with a freshness boost while new, so items
 *    first seen after the split threshold are recommended targets in the test period.
 */
import { Random } from '../util/random.js';
import { makeIdMap } from './intern.js';
import type { Catalog, Interactions } from './types.js';

export interface SyntheticOptions {
  users: number;
  items: number;
  topics: number;
  seed: number;
  /** Mean interactions per user (each user has at least 3). */
  meanLength: number;
  /** P(next topic = current topic). */
  stayProbability: number;
  /** P(next topic = successor of current topic). The rest is a uniformly random topic. */
  successorProbability: number;
  /** Share of items introduced during the timeline (the rest exist from the start). */
  newItemShare: number;
  /** P(pick among the topic's fresh items, introduced within `freshWindow` of the timeline) when there are any. */
  freshProbability: number;
  freshWindow: number;
  /** Timeline: first timestamp (unix seconds) and length in days. */
  startTime: number;
  days: number;
}

export const DEFAULT_SYNTHETIC_OPTIONS: SyntheticOptions = {
  users: 2000,
  items: 1000,
  topics: 20,
  seed: 42,
  meanLength: 10,
  stayProbability: 0.3,
  successorProbability: 0.5,
  newItemShare: 0.3,
  freshProbability: 0.35,
  freshWindow: 0.08,
  startTime: 1577836800, // 2020-01-01
  days: 365,
};

export interface SyntheticDataset {
  interactions: Interactions;
  catalog: Catalog;
  /** Ground truth of the generator, for tests and analyses. */
  truth: {
    itemTopic: Int32Array; // per catalog row
    successor: Int32Array; // per topic
    introduced: Float64Array; // per catalog row, unix seconds
  };
}

const CONSONANTS = 'bdfgklmnprstvz';
const VOWELS = 'aeiou';
const SHARED_WORDS = [
  'classic',
  'premium',
  'original',
  'deluxe',
  'mini',
  'set',
  'pack',
  'edition',
  'new',
  'pro',
  'natural',
  'daily',
  'essential',
  'ultra',
  'soft',
  'light',
  'bold',
  'fresh',
  'pure',
  'smart',
];

/** Distinct pseudo-words of 2-3 syllables. */
function makeWords(random: Random, count: number, taken: Set<string>): string[] {
  const words: string[] = [];
  while (words.length < count) {
    const syllables = 2 + random.nextInt(2);
    let w = '';
    for (let s = 0; s < syllables; s++)
      w += CONSONANTS[random.nextInt(CONSONANTS.length)] + VOWELS[random.nextInt(VOWELS.length)];
    if (random.nextFloat() < 0.5) w += CONSONANTS[random.nextInt(CONSONANTS.length)];
    if (!taken.has(w)) {
      taken.add(w);
      words.push(w);
    }
  }
  return words;
}

/** Index of the first element of sorted[lo..hi) that is > value. */
function upperBound(sorted: Float64Array, lo: number, hi: number, value: number): number {
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid] <= value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function grow<T extends Int32Array | Float64Array>(from: T, to: T): T {
  to.set(from);
  return to;
}

/** Generates the dataset. Everything is determined by the options (seed included). */
export function generateSynthetic(options: Partial<SyntheticOptions> = {}): SyntheticDataset {
  const o: SyntheticOptions = { ...DEFAULT_SYNTHETIC_OPTIONS, ...options };
  if (o.users < 1 || o.items < o.topics || o.topics < 2) {
    throw new RangeError('synthetic data needs users >= 1, topics >= 2 and items >= topics');
  }
  const random = new Random(o.seed);
  const K = o.topics;

  // Topics: vocabulary, coarse category, successor (a permutation without fixed points: a random cycle).
  const taken = new Set<string>(SHARED_WORDS);
  const topicWords = Array.from({ length: K }, () => makeWords(random, 12, taken));
  const numCategories = Math.max(1, Math.round(K / 4));
  const categoryNames = makeWords(random, numCategories, taken);
  const cycle = random.shuffle(Int32Array.from({ length: K }, (_, k) => k));
  const successor = new Int32Array(K);
  for (let j = 0; j < K; j++) successor[cycle[j]] = cycle[(j + 1) % K];

  // Items: topic, popularity, introduction time (timeline fraction in [0, 1)); sorted per topic by introduction.
  const itemTopic = new Int32Array(o.items);
  const popularity = new Float64Array(o.items);
  const intro = new Float64Array(o.items);
  for (let i = 0; i < o.items; i++) {
    itemTopic[i] = i < K ? i : random.nextInt(K); // every topic has an item
    popularity[i] = Math.exp(random.nextGaussian());
    intro[i] = random.nextFloat() < o.newItemShare ? random.nextFloat() : 0;
  }
  const topicStart = new Int32Array(K + 1);
  for (let i = 0; i < o.items; i++) topicStart[itemTopic[i] + 1]++;
  for (let k = 0; k < K; k++) topicStart[k + 1] += topicStart[k];
  const byTopic = new Int32Array(o.items);
  const fill = topicStart.slice(0, K);
  for (let i = 0; i < o.items; i++) byTopic[fill[itemTopic[i]]++] = i;
  for (let k = 0; k < K; k++)
    byTopic.subarray(topicStart[k], topicStart[k + 1]).sort((a, b) => intro[a] - intro[b] || a - b);
  const sortedIntro = new Float64Array(o.items);
  const cumulative = new Float64Array(o.items); // prefix sums of popularity within each topic segment
  for (let k = 0; k < K; k++) {
    let sum = 0;
    for (let j = topicStart[k]; j < topicStart[k + 1]; j++) {
      sortedIntro[j] = intro[byTopic[j]];
      sum += popularity[byTopic[j]];
      cumulative[j] = sum;
    }
  }
  // Weighted draw from byTopic[lo..hi) by popularity (hi > lo).
  const drawRange = (k: number, lo: number, hi: number): number => {
    const base = lo > topicStart[k] ? cumulative[lo - 1] : 0;
    const r = base + random.nextFloat() * (cumulative[hi - 1] - base);
    let a = lo;
    let b = hi - 1;
    while (a < b) {
      const mid = (a + b) >>> 1;
      if (cumulative[mid] < r) a = mid + 1;
      else b = mid;
    }
    return byTopic[a];
  };
  const drawItem = (k: number, t: number, previous: number): number => {
    const lo = topicStart[k];
    const available = upperBound(sortedIntro, lo, topicStart[k + 1], t); // intro <= t
    const freshFrom = Math.max(
      upperBound(sortedIntro, lo, available, 0),
      upperBound(sortedIntro, lo, available, t - o.freshWindow),
    );
    for (let attempt = 0; attempt < 4; attempt++) {
      const item =
        freshFrom < available && random.nextFloat() < o.freshProbability
          ? drawRange(k, freshFrom, available)
          : drawRange(k, lo, available);
      if (item !== previous) return item;
    }
    return previous === byTopic[lo] && available > lo + 1 ? byTopic[lo + 1] : byTopic[lo];
  };

  // Users: length, time window, topic walk.
  let capacity = Math.max(1024, Math.ceil(o.users * o.meanLength * 1.2));
  let users = new Int32Array(capacity);
  let items = new Int32Array(capacity);
  let times = new Float64Array(capacity);
  let size = 0;
  const span = o.days * 86400;
  const extraMean = Math.max(0, o.meanLength - 3);
  for (let u = 0; u < o.users; u++) {
    const length = 3 + (extraMean > 0 ? Math.floor(-Math.log(1 - random.nextFloat()) * extraMean) : 0);
    const gaps = new Float64Array(length);
    let total = 0;
    for (let j = 1; j < length; j++) total += gaps[j] = -Math.log(1 - random.nextFloat()) * 0.025;
    const scale = total > 0.9 ? 0.9 / total : 1;
    let t = random.nextFloat() * (1 - total * scale);
    let topic = random.nextInt(K);
    let previous = -1;
    for (let j = 0; j < length; j++) {
      t += gaps[j] * scale;
      if (j > 0) {
        const r = random.nextFloat();
        if (r >= o.stayProbability) {
          topic = r < o.stayProbability + o.successorProbability ? successor[topic] : random.nextInt(K);
        }
      }
      if (sortedIntro[topicStart[topic]] > t) continue; // no item of this topic exists yet (tiny catalogs only)
      const item = drawItem(topic, t, previous);
      previous = item;
      if (size === capacity) {
        capacity *= 2;
        users = grow(users, new Int32Array(capacity));
        items = grow(items, new Int32Array(capacity));
        times = grow(times, new Float64Array(capacity));
      }
      users[size] = u;
      items[size] = item + 1;
      times[size] = o.startTime + Math.floor(t * span);
      size++;
    }
  }

  // Catalog text.
  const title: string[] = [];
  const description: string[] = [];
  const category: string[] = [];
  const pick = (words: string[]) => words[random.nextInt(words.length)];
  for (let i = 0; i < o.items; i++) {
    const k = itemTopic[i];
    const own = topicWords[k];
    const titleWords = [pick(SHARED_WORDS), pick(own), pick(own)];
    if (random.nextFloat() < 0.5) titleWords.push(pick(own));
    if (random.nextFloat() < 0.3) titleWords.push(pick(SHARED_WORDS));
    title.push(titleWords.join(' '));
    const words: string[] = [];
    const n = 8 + random.nextInt(8);
    for (let j = 0; j < n; j++) {
      const r = random.nextFloat();
      words.push(r < 0.6 ? pick(own) : r < 0.85 ? pick(SHARED_WORDS) : pick(topicWords[random.nextInt(K)]));
    }
    description.push(words.join(' '));
    category.push(categoryNames[k % numCategories]);
  }

  const itemIds = Array.from({ length: o.items }, (_, i) => `i${i + 1}`);
  const userIds = Array.from({ length: o.users }, (_, u) => `u${u + 1}`);
  return {
    interactions: {
      users: users.slice(0, size),
      items: items.slice(0, size),
      timestamps: times.slice(0, size),
      ratings: null,
      userIds: makeIdMap(userIds, false),
      itemIds: makeIdMap(itemIds, true),
      source: `synthetic(seed=${o.seed})`,
    },
    catalog: { ids: itemIds, fields: { title, description, category }, source: `synthetic(seed=${o.seed})` },
    truth: {
      itemTopic,
      successor,
      introduced: Float64Array.from(intro, (x) => o.startTime + Math.floor(x * span)),
    },
  };
}
