/**
 * The preprocessing and split of docs PROTOCOL.md (shared/docs), step by step:
 *  1. order each user's interactions by timestamp (stable: equal timestamps keep file order);
 *  2. rating filter (`minRating`, applied only when the data has ratings);
 *  3. consecutive duplicate removal;
 *  4. global temporal split at T = ts[round(q * (n - 1))] (train_val: ts <= T, test period: ts > T);
 *  5. iterative n-core on train_val;
 *  6. validation users by a seeded shuffle (or given: `validationUsers`); train = train_val of the training users;
 *  7. warm items = items in train; re-indexed 1..numWarm (first appearance in train), cold items after them;
 *  8. test cases: users with a test-period interaction; input = every earlier interaction (train_val part after
 *     n-core + test period), target = the last one. Inputs are stored in full (models truncate).
 * Without timestamps (or with protocol 'leave-last-out') the fallback is leave-last-out: n-core on whole sequences,
 * last item = test target, the one before = validation target, the rest = train (every user is in all three).
 */
import { Random } from '../util/random.js';
import { DataError } from './errors.js';
import type { Catalog, Interactions, PreparedSplit, Sequences, SplitStats } from './types.js';

export interface SplitOptions {
  /** Keep interactions with rating >= minRating when the data has ratings; null = keep all. Paper: 4. */
  minRating: number | null;
  /** Drop an interaction whose item equals the user's previous item. */
  removeConsecutiveDuplicates: boolean;
  /** Global temporal split quantile q. */
  quantile: number;
  /** Iterative n-core on train_val (users and items with fewer than n interactions dropped); <= 1 is off. */
  nCore: number;
  /** Share of train_val users that become validation users. */
  validationShare: number;
  /** Seed of the validation user shuffle. */
  seed: number;
  /** 'auto' = temporal when the data has timestamps, else leave-last-out. */
  protocol: 'auto' | 'temporal' | 'leave-last-out';
  /**
   * Temporal protocol: these users (ids) are the validation users instead of a seeded `validationShare` of them, e.g.
   * another split's validation users, so that a model trained on this split never trains on them (backtestSplit's
   * sameValidationUsers). Users not in train_val are ignored.
   */
  validationUsers?: ReadonlySet<string>;
}

export const DEFAULT_SPLIT_OPTIONS: SplitOptions = {
  minRating: 4,
  removeConsecutiveDuplicates: true,
  quantile: 0.9,
  nCore: 3,
  validationShare: 0.1,
  seed: 42,
  protocol: 'auto',
};

/** Interactions grouped by user, time-ordered, filtered: user u owns items[userStart[u] .. userStart[u+1]). */
interface UserSequences {
  userStart: Int32Array;
  items: Int32Array; // original item indices
  timestamps: Float64Array | null;
  duplicatesRemoved: number;
  ratingRemoved: number;
}

/** Steps 1-3: group by user (stable counting sort), order by time (stable), rating filter, duplicate removal. */
function orderAndFilter(data: Interactions, opts: SplitOptions): UserSequences {
  const n = data.users.length;
  const numUsers = data.userIds.ids.length;
  const userStart = new Int32Array(numUsers + 1);
  for (let i = 0; i < n; i++) userStart[data.users[i] + 1]++;
  for (let u = 0; u < numUsers; u++) userStart[u + 1] += userStart[u];
  const order = new Int32Array(n);
  const fill = userStart.slice(0, numUsers);
  for (let i = 0; i < n; i++) order[fill[data.users[i]]++] = i;

  const ts = data.timestamps;
  if (ts) {
    const scratch = new Int32Array(n);
    for (let u = 0; u < numUsers; u++) sortByTime(order, scratch, userStart[u], userStart[u + 1], ts);
  }

  const ratings = opts.minRating === null ? null : data.ratings;
  const minRating = opts.minRating ?? 0;
  const items = new Int32Array(n);
  const times = ts ? new Float64Array(n) : null;
  const keptStart = new Int32Array(numUsers + 1);
  let m = 0;
  let duplicatesRemoved = 0;
  let ratingRemoved = 0;
  for (let u = 0; u < numUsers; u++) {
    let previous = -1;
    for (let k = userStart[u]; k < userStart[u + 1]; k++) {
      const i = order[k];
      if (ratings && ratings[i] < minRating) {
        ratingRemoved++;
        continue;
      }
      const item = data.items[i];
      if (opts.removeConsecutiveDuplicates && item === previous) {
        duplicatesRemoved++;
        continue;
      }
      previous = item;
      items[m] = item;
      if (times) times[m] = ts![i];
      m++;
    }
    keptStart[u + 1] = m;
  }
  return {
    userStart: keptStart,
    items: items.subarray(0, m), // internal: views, no copy
    timestamps: times ? times.subarray(0, m) : null,
    duplicatesRemoved,
    ratingRemoved,
  };
}

/** Stable sort of order[s..e) by ts[order[k]]: insertion sort for short runs, merge sort otherwise. */
function sortByTime(order: Int32Array, scratch: Int32Array, s: number, e: number, ts: Float64Array): void {
  let sorted = true;
  for (let k = s + 1; k < e; k++) {
    if (ts[order[k]] < ts[order[k - 1]]) {
      sorted = false;
      break;
    }
  }
  if (sorted) return;
  if (e - s <= 32) {
    for (let k = s + 1; k < e; k++) {
      const v = order[k];
      const t = ts[v];
      let j = k - 1;
      while (j >= s && ts[order[j]] > t) {
        order[j + 1] = order[j];
        j--;
      }
      order[j + 1] = v;
    }
    return;
  }
  const mid = (s + e) >>> 1;
  sortByTime(order, scratch, s, mid, ts);
  sortByTime(order, scratch, mid, e, ts);
  scratch.set(order.subarray(s, mid), s);
  let a = s;
  let b = mid;
  let k = s;
  while (a < mid && b < e) order[k++] = ts[order[b]] < ts[scratch[a]] ? order[b++] : scratch[a++];
  while (a < mid) order[k++] = scratch[a++];
}

function medianOfThree(a: number, b: number, c: number): number {
  return a < b ? (b < c ? b : a < c ? c : a) : a < c ? a : b < c ? c : b;
}

/** The k-th smallest value (0-based) of values, which is reordered (quickselect). */
export function selectKth(values: Float64Array, k: number): number {
  let lo = 0;
  let hi = values.length - 1;
  while (hi > lo) {
    const mid = (lo + hi) >>> 1;
    const pivot = medianOfThree(values[lo], values[mid], values[hi]);
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (values[i] < pivot) i++;
      while (values[j] > pivot) j--;
      if (i <= j) {
        const t = values[i];
        values[i] = values[j];
        values[j] = t;
        i++;
        j--;
      }
    }
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else return values[k];
  }
  return values[k];
}

/**
 * Iterative n-core over the interactions marked in `inSet` (per position of seq.items): clears positions of users and
 * items with fewer than n remaining interactions until nothing changes, and returns the number of positions kept.
 * Implemented with a work queue (each position is removed at most once); the n-core is unique, so this equals
 * repeating full passes until a fixed point.
 */
function nCoreFilter(seq: UserSequences, inSet: Uint8Array, numItems: number, n: number): number {
  const numUsers = seq.userStart.length - 1;
  const m = seq.items.length;
  const userCount = new Int32Array(numUsers);
  const itemStart = new Int32Array(numItems + 2); // counts first, then CSR offsets
  const positionUser = new Int32Array(m);
  let kept = 0;
  for (let u = 0; u < numUsers; u++) {
    let c = 0;
    for (let k = seq.userStart[u]; k < seq.userStart[u + 1]; k++) {
      positionUser[k] = u;
      if (inSet[k]) {
        itemStart[seq.items[k] + 1]++;
        c++;
      }
    }
    userCount[u] = c;
    kept += c;
  }
  if (n <= 1) return kept;
  const itemCount = new Int32Array(numItems + 1);
  for (let i = 1; i <= numItems; i++) itemCount[i] = itemStart[i + 1];
  for (let i = 0; i <= numItems; i++) itemStart[i + 1] += itemStart[i];
  const itemPositions = new Int32Array(kept);
  const fill = itemStart.slice(0, numItems + 1);
  for (let k = 0; k < m; k++) if (inSet[k]) itemPositions[fill[seq.items[k]]++] = k;

  // Queue entries: user u as u, item i as -i (items are >= 1).
  const queue: number[] = [];
  for (let u = 0; u < numUsers; u++) if (userCount[u] > 0 && userCount[u] < n) queue.push(u);
  for (let i = 1; i <= numItems; i++) if (itemCount[i] > 0 && itemCount[i] < n) queue.push(-i);
  while (queue.length > 0) {
    const entry = queue.pop()!;
    if (entry >= 0) {
      for (let k = seq.userStart[entry]; k < seq.userStart[entry + 1]; k++) {
        if (!inSet[k]) continue;
        inSet[k] = 0;
        kept--;
        const i = seq.items[k];
        if (itemCount[i]-- === n) queue.push(-i);
      }
      userCount[entry] = 0;
    } else {
      const i = -entry;
      for (let j = itemStart[i]; j < itemStart[i + 1]; j++) {
        const k = itemPositions[j];
        if (!inSet[k]) continue;
        inSet[k] = 0;
        kept--;
        const u = positionUser[k];
        if (userCount[u]-- === n) queue.push(u);
      }
      itemCount[i] = 0;
    }
  }
  return kept;
}

/** CSR sequences built by appending one sequence at a time. */
class SequenceBuilder {
  private offsets: number[] = [0];
  private items: Int32Array;
  private size = 0;

  constructor(capacity: number) {
    this.items = new Int32Array(Math.max(capacity, 1));
  }

  push(item: number): void {
    if (this.size === this.items.length) {
      const grown = new Int32Array(this.items.length * 2);
      grown.set(this.items);
      this.items = grown;
    }
    this.items[this.size++] = item;
  }

  /** Ends the current sequence. */
  close(): void {
    this.offsets.push(this.size);
  }

  /** Drops what was pushed since the last close. */
  discard(): void {
    this.size = this.offsets[this.offsets.length - 1];
  }

  get length(): number {
    return this.size - this.offsets[this.offsets.length - 1];
  }

  /** Removes and returns the last pushed item of the open sequence. */
  pop(): number {
    return this.items[--this.size];
  }

  finish(): Sequences {
    return { offsets: Int32Array.from(this.offsets), items: this.items.slice(0, this.size) };
  }
}

/** New item indices: warm items (first appearance in train order) get 1..numWarm, other present items follow. */
class ItemIndexer {
  readonly newIndex: Int32Array; // original index -> new index, 0 = not assigned
  readonly itemIds: string[] = [''];

  constructor(
    numItems: number,
    private readonly ids: string[],
  ) {
    this.newIndex = new Int32Array(numItems + 1);
  }

  assign(original: number): number {
    let k = this.newIndex[original];
    if (k === 0) {
      k = this.itemIds.length;
      this.newIndex[original] = k;
      this.itemIds.push(this.ids[original]);
    }
    return k;
  }
}

function emptyStats(): SplitStats {
  return {
    interactions: 0,
    users: 0,
    items: 0,
    consecutive_duplicates_removed: 0,
    threshold_timestamp: null,
    train_val_interactions: 0,
    train_users: 0,
    val_users: 0,
    warm_items: 0,
    cold_items: 0,
    test_users: 0,
    test_users_without_input: 0,
    cold_test_share: 0,
    cold_input_share: 0,
    avg_sequence_length: 0,
    protocol: 'temporal',
  };
}

/** Runs the protocol on loaded interactions. See the module comment and PROTOCOL.md. */
export function prepareSplit(interactions: Interactions, options: Partial<SplitOptions> = {}): PreparedSplit {
  const opts: SplitOptions = { ...DEFAULT_SPLIT_OPTIONS, ...options };
  if (!(opts.quantile >= 0 && opts.quantile <= 1))
    throw new RangeError(`quantile must be in [0, 1], got ${opts.quantile}`);
  if (!(opts.validationShare >= 0 && opts.validationShare < 1)) {
    throw new RangeError(`validationShare must be in [0, 1), got ${opts.validationShare}`);
  }
  if (!Number.isInteger(opts.nCore) || opts.nCore < 0)
    throw new RangeError(`nCore must be a non-negative integer`);
  if (interactions.users.length === 0) throw new DataError(interactions.source, 'no interactions');
  let protocol = opts.protocol;
  if (protocol === 'auto') protocol = interactions.timestamps ? 'temporal' : 'leave-last-out';
  if (protocol === 'leave-last-out' && opts.validationUsers) {
    throw new RangeError(`validationUsers needs the temporal protocol (leave-last-out validates every user)`);
  }
  if (protocol === 'temporal' && !interactions.timestamps) {
    throw new DataError(
      interactions.source,
      'the temporal split needs a time column (or use leave-last-out)',
    );
  }
  const seq = orderAndFilter(interactions, opts);
  if (seq.items.length === 0) {
    throw new DataError(
      interactions.source,
      `no interactions left after the rating filter (minRating ${opts.minRating})`,
    );
  }
  return protocol === 'temporal'
    ? temporalSplit(interactions, seq, opts)
    : leaveLastOutSplit(interactions, seq, opts);
}

/** Counts of users and distinct items in the filtered data. */
function dataCounts(
  seq: UserSequences,
  numItems: number,
): { users: number; present: Uint8Array; items: number } {
  let users = 0;
  for (let u = 0; u + 1 < seq.userStart.length; u++) if (seq.userStart[u + 1] > seq.userStart[u]) users++;
  const present = new Uint8Array(numItems + 1);
  let items = 0;
  for (let k = 0; k < seq.items.length; k++) {
    if (!present[seq.items[k]]) {
      present[seq.items[k]] = 1;
      items++;
    }
  }
  return { users, present, items };
}

function temporalSplit(data: Interactions, seq: UserSequences, opts: SplitOptions): PreparedSplit {
  const numUsers = data.userIds.ids.length;
  const numItemsRaw = data.itemIds.ids.length - 1;
  const m = seq.items.length;
  const ts = seq.timestamps!;

  // Step 4: threshold and the per-user boundary (sequences are time-ordered, so train_val is a prefix).
  const threshold = selectKth(ts.slice(), Math.round(opts.quantile * (m - 1)));
  const inTrainVal = new Uint8Array(m);
  for (let k = 0; k < m; k++) inTrainVal[k] = ts[k] <= threshold ? 1 : 0;

  // Step 5: n-core on train_val.
  const trainValInteractions = nCoreFilter(seq, inTrainVal, numItemsRaw, opts.nCore);

  // Step 6: validation users among the users left in train_val.
  const trainValUsers: number[] = [];
  for (let u = 0; u < numUsers; u++) {
    for (let k = seq.userStart[u]; k < seq.userStart[u + 1]; k++) {
      if (inTrainVal[k]) {
        trainValUsers.push(u);
        break;
      }
    }
  }
  const isValidation = new Uint8Array(numUsers);
  if (opts.validationUsers) {
    for (const u of trainValUsers) if (opts.validationUsers.has(data.userIds.ids[u])) isValidation[u] = 1;
  } else {
    const shuffled = new Random(opts.seed).shuffle(Int32Array.from(trainValUsers));
    const numValidation = Math.round(opts.validationShare * shuffled.length);
    for (let j = 0; j < numValidation; j++) isValidation[shuffled[j]] = 1;
  }

  // Steps 6-7: train sequences; warm items numbered by first appearance in train.
  const indexer = new ItemIndexer(numItemsRaw, data.itemIds.ids);
  const train = new SequenceBuilder(trainValInteractions);
  const trainUserIds: string[] = [];
  for (const u of trainValUsers) {
    if (isValidation[u]) continue;
    for (let k = seq.userStart[u]; k < seq.userStart[u + 1]; k++)
      if (inTrainVal[k]) train.push(indexer.assign(seq.items[k]));
    train.close();
    trainUserIds.push(data.userIds.ids[u]);
  }
  const numWarm = indexer.itemIds.length - 1;
  const counts = dataCounts(seq, numItemsRaw);
  for (let i = 1; i <= numItemsRaw; i++) if (counts.present[i]) indexer.assign(i);
  const numItems = indexer.itemIds.length - 1;
  const newIndex = indexer.newIndex;

  // Validation cases: validation users' train_val interactions restricted to warm items; the last is the target.
  const validationInputs = new SequenceBuilder(1024);
  const validationTargets: number[] = [];
  const validationUsers: string[] = [];
  for (const u of trainValUsers) {
    if (!isValidation[u]) continue;
    for (let k = seq.userStart[u]; k < seq.userStart[u + 1]; k++) {
      const item = newIndex[seq.items[k]];
      if (inTrainVal[k] && item <= numWarm) validationInputs.push(item);
    }
    if (validationInputs.length >= 2) {
      validationTargets.push(validationInputs.pop());
      validationInputs.close();
      validationUsers.push(data.userIds.ids[u]);
    } else validationInputs.discard();
  }

  // Step 8: test cases.
  const testInputs = new SequenceBuilder(1024);
  const testTargets: number[] = [];
  const testCold: number[] = [];
  const testUsers: string[] = [];
  let withoutInput = 0;
  for (let u = 0; u < numUsers; u++) {
    const s = seq.userStart[u];
    const e = seq.userStart[u + 1];
    if (e === s || ts[e - 1] <= threshold) continue; // no test-period interaction
    for (let k = s; k < e; k++) {
      if (inTrainVal[k] || ts[k] > threshold) testInputs.push(newIndex[seq.items[k]]);
    }
    if (testInputs.length < 2) {
      testInputs.discard();
      withoutInput++;
      continue;
    }
    const target = testInputs.pop();
    testTargets.push(target);
    testCold.push(target > numWarm ? 1 : 0);
    testUsers.push(data.userIds.ids[u]);
    testInputs.close();
  }
  return assembleSplit({
    protocol: 'temporal',
    threshold: threshold,
    seq,
    interactions: m,
    users: counts.users,
    itemIds: indexer.itemIds,
    numWarm,
    numItems,
    trainValInteractions,
    train: train.finish(),
    trainUsers: trainUserIds,
    valUsers: isValidation.reduce((n, v) => n + v, 0),
    validation: { inputs: validationInputs.finish(), targets: validationTargets, users: validationUsers },
    test: { inputs: testInputs.finish(), targets: testTargets, cold: testCold, users: testUsers },
    withoutInput,
  });
}

function leaveLastOutSplit(data: Interactions, seq: UserSequences, opts: SplitOptions): PreparedSplit {
  const numUsers = data.userIds.ids.length;
  const numItemsRaw = data.itemIds.ids.length - 1;
  const m = seq.items.length;
  const kept = new Uint8Array(m).fill(1);
  const keptInteractions = nCoreFilter(seq, kept, numItemsRaw, opts.nCore);

  // Train = every user's kept sequence without its last two items; warm items numbered by first appearance there.
  const indexer = new ItemIndexer(numItemsRaw, data.itemIds.ids);
  const train = new SequenceBuilder(keptInteractions);
  const userItems: number[] = [];
  const trainUserIds: string[] = [];
  for (let u = 0; u < numUsers; u++) {
    userItems.length = 0;
    for (let k = seq.userStart[u]; k < seq.userStart[u + 1]; k++) if (kept[k]) userItems.push(seq.items[k]);
    if (userItems.length < 3) continue;
    for (let j = 0; j < userItems.length - 2; j++) train.push(indexer.assign(userItems[j]));
    train.close();
    trainUserIds.push(data.userIds.ids[u]);
  }
  const numWarm = indexer.itemIds.length - 1;
  const counts = dataCounts(seq, numItemsRaw);
  for (let i = 1; i <= numItemsRaw; i++) if (counts.present[i]) indexer.assign(i);
  const numItems = indexer.itemIds.length - 1;
  const newIndex = indexer.newIndex;

  const validationInputs = new SequenceBuilder(keptInteractions);
  const validationTargets: number[] = [];
  const validationUsers: string[] = [];
  const testInputs = new SequenceBuilder(keptInteractions);
  const testTargets: number[] = [];
  const testCold: number[] = [];
  const testUsers: string[] = [];
  let withoutInput = 0;
  let trainValInteractions = 0;
  for (let u = 0; u < numUsers; u++) {
    userItems.length = 0;
    for (let k = seq.userStart[u]; k < seq.userStart[u + 1]; k++)
      if (kept[k]) userItems.push(newIndex[seq.items[k]]);
    const len = userItems.length;
    if (len === 0) continue;
    trainValInteractions += len - 1;
    if (len < 2) {
      withoutInput++;
      continue;
    }
    // Validation: input = train part, target = second to last, when both exist and the target is warm.
    if (len >= 3 && userItems[len - 2] <= numWarm) {
      for (let j = 0; j < len - 2; j++) validationInputs.push(userItems[j]);
      validationInputs.close();
      validationTargets.push(userItems[len - 2]);
      validationUsers.push(data.userIds.ids[u]);
    }
    for (let j = 0; j < len - 1; j++) testInputs.push(userItems[j]);
    testInputs.close();
    testTargets.push(userItems[len - 1]);
    testCold.push(userItems[len - 1] > numWarm ? 1 : 0);
    testUsers.push(data.userIds.ids[u]);
  }
  return assembleSplit({
    protocol: 'leave-last-out',
    threshold: null,
    seq,
    interactions: m,
    users: counts.users,
    itemIds: indexer.itemIds,
    numWarm,
    numItems,
    trainValInteractions,
    train: train.finish(),
    trainUsers: trainUserIds,
    valUsers: validationTargets.length,
    validation: { inputs: validationInputs.finish(), targets: validationTargets, users: validationUsers },
    test: { inputs: testInputs.finish(), targets: testTargets, cold: testCold, users: testUsers },
    withoutInput,
  });
}

interface SplitParts {
  protocol: 'temporal' | 'leave-last-out';
  threshold: number | null;
  seq: UserSequences;
  interactions: number;
  users: number;
  itemIds: string[];
  numWarm: number;
  numItems: number;
  trainValInteractions: number;
  train: Sequences;
  trainUsers: string[];
  valUsers: number;
  validation: { inputs: Sequences; targets: number[]; users: string[] };
  test: { inputs: Sequences; targets: number[]; cold: number[]; users: string[] };
  withoutInput: number;
}

/** The statistics and the PreparedSplit both protocols end with. */
function assembleSplit(p: SplitParts): PreparedSplit {
  const { test, validation, numWarm, numItems } = p;
  let coldInputs = 0;
  for (let k = 0; k < test.inputs.items.length; k++) if (test.inputs.items[k] > numWarm) coldInputs++;
  const stats = emptyStats();
  stats.protocol = p.protocol;
  stats.interactions = p.interactions;
  stats.users = p.users;
  stats.items = numItems;
  stats.consecutive_duplicates_removed = p.seq.duplicatesRemoved;
  stats.threshold_timestamp = p.threshold;
  stats.train_val_interactions = p.trainValInteractions;
  stats.train_users = p.trainUsers.length;
  stats.val_users = p.valUsers;
  stats.warm_items = numWarm;
  stats.cold_items = numItems - numWarm;
  stats.test_users = test.targets.length;
  stats.test_users_without_input = p.withoutInput;
  stats.cold_test_share = share(
    test.cold.reduce((a, b) => a + b, 0),
    test.targets.length,
  );
  stats.cold_input_share = share(coldInputs, test.inputs.items.length);
  stats.avg_sequence_length = share(p.interactions, p.users);
  stats.rating_filtered = p.seq.ratingRemoved;
  stats.validation_cases = validation.targets.length;
  return {
    protocol: p.protocol,
    itemIds: p.itemIds,
    numWarm,
    numItems,
    train: p.train,
    trainUsers: p.trainUsers,
    validation: {
      inputs: validation.inputs,
      targets: Int32Array.from(validation.targets),
      users: validation.users,
    },
    test: {
      inputs: test.inputs,
      targets: Int32Array.from(test.targets),
      cold: Uint8Array.from(test.cold),
      users: test.users,
    },
    trainItemCounts: itemCounts(p.train, numItems),
    stats,
  };
}

function share(part: number, whole: number): number {
  return whole === 0 ? 0 : part / whole;
}

function itemCounts(sequences: Sequences, numItems: number): Int32Array {
  const counts = new Int32Array(numItems + 1);
  for (let k = 0; k < sequences.items.length; k++) counts[sequences.items[k]]++;
  return counts;
}

export interface CatalogAlignment {
  /** Catalog row of each split item index (length numItems + 1); -1 for the padding row and for missing items. */
  rowOf: Int32Array;
  /** Split items that have no catalog row. */
  missing: number;
  /** Up to 5 missing item ids, for messages. */
  missingExamples: string[];
  /** Catalog rows whose item does not occur in the split (they get no item index). */
  extra: number;
  /** Catalog fields aligned to split item indices: value k belongs to item k; '' for padding and missing items. */
  fields: Record<string, string[]>;
}

/**
 * Aligns a catalog to the split's item indices so that content vectors can be built per item index. Missing items
 * (in the interactions but not in the catalog) are counted; with strict they are an error.
 */
export function alignCatalog(
  split: PreparedSplit,
  catalog: Catalog,
  opts: { strict?: boolean } = {},
): CatalogAlignment {
  const rowById = new Map<string, number>();
  catalog.ids.forEach((id, row) => rowById.set(id, row));
  const rowOf = new Int32Array(split.numItems + 1).fill(-1);
  const missingExamples: string[] = [];
  let missing = 0;
  let matched = 0;
  for (let k = 1; k <= split.numItems; k++) {
    const row = rowById.get(split.itemIds[k]);
    if (row === undefined) {
      missing++;
      if (missingExamples.length < 5) missingExamples.push(split.itemIds[k]);
    } else {
      rowOf[k] = row;
      matched++;
    }
  }
  if (missing > 0 && opts.strict) {
    throw new DataError(
      catalog.source,
      `${missing} item(s) occurring in the interactions are missing from the catalog (e.g. ${missingExamples.map((id) => `'${id}'`).join(', ')})`,
    );
  }
  const fields: Record<string, string[]> = {};
  for (const [name, values] of Object.entries(catalog.fields)) {
    const aligned = new Array<string>(split.numItems + 1).fill('');
    for (let k = 1; k <= split.numItems; k++) if (rowOf[k] >= 0) aligned[k] = values[rowOf[k]];
    fields[name] = aligned;
  }
  return { rowOf, missing, missingExamples, extra: catalog.ids.length - matched, fields };
}
