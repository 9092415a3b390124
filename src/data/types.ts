/**
 * Shared data contracts. Every later stage (content, model, eval, service) speaks in these types.
 *
 * Item indices: 0 is the padding index and never a real item. Real items are 1..numItems. After a split, warm
 * items come first (1..numWarm) and cold items after them (numWarm+1..numItems), so a model trained on warm items
 * uses item rows 0..numWarm and cold items are appended at inference without renumbering.
 */

/** Variable-length integer sequences in CSR form: sequence s is items[offsets[s] .. offsets[s+1]). */
export interface Sequences {
  offsets: Int32Array; // length count + 1, offsets[0] = 0
  items: Int32Array; // item indices (1-based, never 0)
}

/** Dense string <-> index interning. ids[0] is '' for the padding index when used for items. */
export interface IdMap {
  ids: string[];
  index: Map<string, number>;
}

/** Raw interactions as loaded from a file, in file order, as typed arrays. */
export interface Interactions {
  users: Int32Array; // index into userIds.ids
  items: Int32Array; // index into itemIds.ids (1-based)
  timestamps: Float64Array | null; // unix seconds; null when the data has no time column
  ratings: Float32Array | null;
  userIds: IdMap;
  itemIds: IdMap; // ids[0] = '' (padding)
  source: string; // file name, for messages
}

/** An item catalog: ids and named text fields. */
export interface Catalog {
  ids: string[];
  fields: Record<string, string[]>; // field name -> value per catalog row
  source: string;
}

export interface SplitStats {
  interactions: number;
  users: number;
  items: number;
  consecutive_duplicates_removed: number;
  threshold_timestamp: number | null;
  train_val_interactions: number;
  train_users: number;
  val_users: number;
  warm_items: number;
  cold_items: number;
  test_users: number;
  test_users_without_input: number;
  cold_test_share: number;
  cold_input_share: number;
  avg_sequence_length: number;
  protocol: 'temporal' | 'leave-last-out';
  /** Interactions dropped by the rating filter. */
  rating_filtered?: number;
  /** Validation cases (validation users whose warm-only sequence has at least two items). */
  validation_cases?: number;
}

/** The prepared split of PROTOCOL.md, ready for training and evaluation. */
export interface PreparedSplit {
  protocol: 'temporal' | 'leave-last-out';
  itemIds: string[]; // itemIds[0] = '' (padding); warm items 1..numWarm, then cold items
  numWarm: number;
  numItems: number; // = itemIds.length - 1
  train: Sequences; // training users' train_val sequences (warm items only by construction)
  trainUsers?: string[]; // user id of each train sequence (set by prepareSplit / loadSplit)
  validation: {
    inputs: Sequences; // validation users: warm-only sequence minus its last item
    targets: Int32Array;
    users?: string[]; // user id of each validation case (set by prepareSplit / loadSplit)
  };
  test: {
    inputs: Sequences; // full input before the ground truth (not truncated; models truncate to max length)
    targets: Int32Array;
    cold: Uint8Array; // 1 when the target is a cold item
    users: string[]; // user id of each test case
  };
  trainItemCounts: Int32Array; // length numItems + 1: occurrences of each item in train
  stats: SplitStats;
}
