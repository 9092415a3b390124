/**
 * The training sequences that changed between two splits (a warm start's fine-tuning set, docs/retraining.md):
 * those of users who are new, or whose sequence (as item ids) differs from the one the older split trained on.
 * A model warm-started from a model of the older split has seen every other sequence exactly as it is.
 */
import type { PreparedSplit, Sequences } from './types.js';

export interface ChangedSequences {
  /** The split with `train` and `trainUsers` restricted to the changed sequences (everything else shared). */
  split: PreparedSplit;
  /** Sequences of users the older split trained on, longer or different now. */
  changed: number;
  /** Sequences of users the older split did not train on. */
  added: number;
  /** Sequences left out: the same item ids in the same order in both splits. */
  unchanged: number;
  /** One flag per training sequence of the newer split: 1 when it is new or changed (kept above), else 0. */
  mask: Uint8Array;
}

export function changedSequences(split: PreparedSplit, older: PreparedSplit): ChangedSequences {
  if (!split.trainUsers || !older.trainUsers)
    throw new Error('changed sequences: both splits need their training users (splits written by prepare)');
  const before = new Map<string, number>();
  older.trainUsers.forEach((user, s) => before.set(user, s));
  const keep: number[] = [];
  const mask = new Uint8Array(split.trainUsers.length);
  let changed = 0;
  let added = 0;
  for (let s = 0; s < split.trainUsers.length; s++) {
    const o = before.get(split.trainUsers[s]);
    if (o === undefined) added++;
    else if (!sameItems(split, s, older, o)) changed++;
    else continue;
    keep.push(s);
    mask[s] = 1;
  }
  const offsets = new Int32Array(keep.length + 1);
  let length = 0;
  keep.forEach((s, r) => (offsets[r + 1] = length += split.train.offsets[s + 1] - split.train.offsets[s]));
  const items = new Int32Array(length);
  keep.forEach((s, r) =>
    items.set(split.train.items.subarray(split.train.offsets[s], split.train.offsets[s + 1]), offsets[r]),
  );
  const train: Sequences = { offsets, items };
  return {
    split: { ...split, train, trainUsers: keep.map((s) => split.trainUsers![s]) },
    changed,
    added,
    unchanged: split.trainUsers.length - keep.length,
    mask,
  };
}

/** Whether sequence s of `a` and sequence o of `b` hold the same item ids in the same order. */
function sameItems(a: PreparedSplit, s: number, b: PreparedSplit, o: number): boolean {
  const from = a.train.offsets[s];
  const length = a.train.offsets[s + 1] - from;
  const bFrom = b.train.offsets[o];
  if (b.train.offsets[o + 1] - bFrom !== length) return false;
  for (let i = 0; i < length; i++)
    if (a.itemIds[a.train.items[from + i]] !== b.itemIds[b.train.items[bFrom + i]]) return false;
  return true;
}
