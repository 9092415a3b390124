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
 *  - finer content signal (styles): every item also has one of `styles` styles, shared by all topics and named by
 *    style words in its text; each user keeps a preferred style and picks an item of that style with probability
 *    `styleProbability`. Which item of a topic comes next is then predicted by the text (like a shopper who sticks to
 *    a brand or a look), a signal spread over many words and components, so it survives the paper's standardize +
 *    PCA + L2 projection and reaches cold items, which have nothing but their text;
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
  /** Styles shared by all topics (0 = none); each user prefers one. */
  styles: number;
  /** P(pick an item of the user's style within the chosen topic) when the topic has one available. */
  styleProbability: number;
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
  styles: 8,
  styleProbability: 0.7,
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
    itemStyle: Int32Array; // per catalog row (all 0 without styles)
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
export function upperBound(sorted: Float64Array, lo: number, hi: number, value: number): number {
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid] <= value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Generated interactions in the order they are drawn (arrays doubled when full). */
export class GeneratedLog {
  private users: Int32Array;
  private items: Int32Array;
  private times: Float64Array;
  size = 0;

  constructor(capacity: number) {
    this.users = new Int32Array(capacity);
    this.items = new Int32Array(capacity);
    this.times = new Float64Array(capacity);
  }

  /** The (1-based) item of entry i. */
  item(i: number): number {
    return this.items[i];
  }

  push(user: number, item: number, timestamp: number): void {
    if (this.size === this.users.length) {
      const double = <T extends Int32Array | Float64Array>(a: T): T => {
        const b = new (a.constructor as new (n: number) => T)(a.length * 2);
        b.set(a);
        return b;
      };
      this.users = double(this.users);
      this.items = double(this.items);
      this.times = double(this.times);
    }
    this.users[this.size] = user;
    this.items[this.size] = item;
    this.times[this.size] = timestamp;
    this.size++;
  }

  columns(): { users: Int32Array; items: Int32Array; timestamps: Float64Array } {
    return {
      users: this.users.slice(0, this.size),
      items: this.items.slice(0, this.size),
      timestamps: this.times.slice(0, this.size),
    };
  }
}

/** Items grouped by a label, each group sorted by introduction time, with prefix sums of popularity. */
export class ItemGroups {
  /** Group g holds items[start[g]..start[g + 1]). */
  readonly start: Int32Array;
  readonly items: Int32Array;
  readonly sortedIntro: Float64Array;
  private readonly cumulative: Float64Array;

  constructor(label: Int32Array, groups: number, popularity: Float64Array, intro: Float64Array) {
    const n = label.length;
    this.start = new Int32Array(groups + 1);
    for (let i = 0; i < n; i++) this.start[label[i] + 1]++;
    for (let g = 0; g < groups; g++) this.start[g + 1] += this.start[g];
    this.items = new Int32Array(n);
    const fill = this.start.slice(0, groups);
    for (let i = 0; i < n; i++) this.items[fill[label[i]]++] = i;
    this.sortedIntro = new Float64Array(n);
    this.cumulative = new Float64Array(n);
    for (let g = 0; g < groups; g++) {
      const segment = this.items.subarray(this.start[g], this.start[g + 1]);
      segment.sort((a, b) => intro[a] - intro[b] || a - b);
      let sum = 0;
      for (let j = this.start[g]; j < this.start[g + 1]; j++) {
        this.sortedIntro[j] = intro[this.items[j]];
        sum += popularity[this.items[j]];
        this.cumulative[j] = sum;
      }
    }
  }

  /** A draw from items[lo..hi) of group g (hi > lo) weighted by popularity. */
  draw(random: Random, g: number, lo: number, hi: number): number {
    const base = lo > this.start[g] ? this.cumulative[lo - 1] : 0;
    const r = base + random.nextFloat() * (this.cumulative[hi - 1] - base);
    let a = lo;
    let b = hi - 1;
    while (a < b) {
      const mid = (a + b) >>> 1;
      if (this.cumulative[mid] < r) a = mid + 1;
      else b = mid;
    }
    return this.items[a];
  }

  /**
   * An item of group g available at t (introduced at or before t), by popularity, other than previous (previous
   * itself when it is the only one and orPrevious); only among the group's fresh items (introduced within
   * freshWindow before t, and during the timeline) when freshWindow is not null. -1 when the group has no such item.
   */
  drawAvailable(
    random: Random,
    g: number,
    t: number,
    previous: number,
    freshWindow: number | null,
    orPrevious: boolean,
  ): number {
    let lo = this.start[g];
    const available = upperBound(this.sortedIntro, lo, this.start[g + 1], t); // intro <= t
    if (freshWindow !== null) {
      lo = Math.max(
        upperBound(this.sortedIntro, lo, available, 0),
        upperBound(this.sortedIntro, lo, available, t - freshWindow),
      );
    }
    if (available === lo) return -1;
    for (let attempt = 0; attempt < 4; attempt++) {
      const item = this.draw(random, g, lo, available);
      if (item !== previous) return item;
    }
    const other = previous !== this.items[lo] ? this.items[lo] : available > lo + 1 ? this.items[lo + 1] : -1;
    return other < 0 && orPrevious ? previous : other;
  }
}

/** Generates the dataset. Everything is determined by the options (seed included). */
export function generateSynthetic(options: Partial<SyntheticOptions> = {}): SyntheticDataset {
  const o: SyntheticOptions = { ...DEFAULT_SYNTHETIC_OPTIONS, ...options };
  if (o.users < 1 || o.items < o.topics || o.topics < 2) {
    throw new RangeError('synthetic data needs users >= 1, topics >= 2 and items >= topics');
  }
  const random = new Random(o.seed);
  const K = o.topics;
  const S = Math.max(0, Math.floor(o.styles));

  // Topics: vocabulary, coarse category, successor (a permutation without fixed points: a random cycle).
  const taken = new Set<string>(SHARED_WORDS);
  const topicWords = Array.from({ length: K }, () => makeWords(random, 12, taken));
  const numCategories = Math.max(1, Math.round(K / 4));
  const categoryNames = makeWords(random, numCategories, taken);
  const styleWords = Array.from({ length: S }, () => makeWords(random, 6, taken));
  // Words of a product line: one line per (topic, style), so the text names the item's cell, not only its axes.
  const lineWords = Array.from({ length: K * S }, () => makeWords(random, 4, taken));
  const cycle = random.shuffle(Int32Array.from({ length: K }, (_, k) => k));
  const successor = new Int32Array(K);
  for (let j = 0; j < K; j++) successor[cycle[j]] = cycle[(j + 1) % K];

  // Items: topic, style, popularity, introduction time (timeline fraction in [0, 1)).
  const itemTopic = new Int32Array(o.items);
  const itemStyle = new Int32Array(o.items);
  const popularity = new Float64Array(o.items);
  const intro = new Float64Array(o.items);
  for (let i = 0; i < o.items; i++) {
    itemTopic[i] = i < K ? i : random.nextInt(K); // every topic has an item
    itemStyle[i] = S > 0 ? random.nextInt(S) : 0;
    popularity[i] = Math.exp(random.nextGaussian());
    intro[i] = random.nextFloat() < o.newItemShare ? random.nextFloat() : 0;
  }
  const byTopic = new ItemGroups(itemTopic, K, popularity, intro);
  const byTopicStyle =
    S > 0
      ? new ItemGroups(
          itemTopic.map((k, i) => k * S + itemStyle[i]),
          K * S,
          popularity,
          intro,
        )
      : null;
  // Within topic k: a fresh item with probability freshProbability (when there is one), of the user's style with
  // probability styleProbability (when there is one).
  const drawItem = (k: number, style: number, t: number, previous: number): number => {
    const fresh = random.nextFloat() < o.freshProbability;
    const ofStyle = byTopicStyle !== null && random.nextFloat() < o.styleProbability;
    for (const f of fresh ? [true, false] : [false]) {
      const window = f ? o.freshWindow : null;
      const item = ofStyle
        ? byTopicStyle.drawAvailable(random, k * S + style, t, previous, window, false)
        : -1;
      if (item >= 0) return item;
      const any = byTopic.drawAvailable(random, k, t, previous, window, true);
      if (any >= 0) return any;
    }
    return -1;
  };

  // Users: length, time window, topic walk.
  const log = new GeneratedLog(Math.max(1024, Math.ceil(o.users * o.meanLength * 1.2)));
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
    const style = S > 0 ? random.nextInt(S) : 0;
    let previous = -1;
    for (let j = 0; j < length; j++) {
      t += gaps[j] * scale;
      if (j > 0) {
        const r = random.nextFloat();
        if (r >= o.stayProbability) {
          topic = r < o.stayProbability + o.successorProbability ? successor[topic] : random.nextInt(K);
        }
      }
      const item = drawItem(topic, style, t, previous);
      if (item < 0) continue; // no item of this topic exists yet (tiny catalogs only)
      previous = item;
      log.push(u, item + 1, o.startTime + Math.floor(t * span));
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
    const style = S > 0 ? styleWords[itemStyle[i]] : null;
    const line = S > 0 ? lineWords[k * S + itemStyle[i]] : null;
    const titleWords = [pick(SHARED_WORDS), pick(own), pick(own)];
    if (style && line) titleWords.splice(1, 0, pick(style), pick(line));
    if (random.nextFloat() < 0.5) titleWords.push(pick(own));
    if (random.nextFloat() < 0.3) titleWords.push(pick(SHARED_WORDS));
    title.push(titleWords.join(' '));
    const words: string[] = [];
    const n = 8 + random.nextInt(8);
    for (let j = 0; j < n; j++) {
      const r = random.nextFloat();
      if (style && line && r < 0.4) words.push(r < 0.2 ? pick(style) : pick(line));
      else
        words.push(r < 0.6 ? pick(own) : r < 0.85 ? pick(SHARED_WORDS) : pick(topicWords[random.nextInt(K)]));
    }
    description.push(words.join(' '));
    category.push(categoryNames[k % numCategories]);
  }

  const itemIds = Array.from({ length: o.items }, (_, i) => `i${i + 1}`);
  const userIds = Array.from({ length: o.users }, (_, u) => `u${u + 1}`);
  return {
    interactions: {
      ...log.columns(),
      ratings: null,
      userIds: makeIdMap(userIds, false),
      itemIds: makeIdMap(itemIds, true),
      source: `synthetic(seed=${o.seed})`,
    },
    catalog: { ids: itemIds, fields: { title, description, category }, source: `synthetic(seed=${o.seed})` },
    truth: {
      itemTopic,
      itemStyle,
      successor,
      introduced: Float64Array.from(intro, (x) => o.startTime + Math.floor(x * span)),
    },
  };
}
