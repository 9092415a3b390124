/**
 * Warm start (issue 13): a new model, built for a new split's items, takes over what an earlier model learned.
 *
 * - Dense weights (positions, blocks, final layer norm) are copied: the architecture must be the same.
 * - The trainable item row (the table for id / content-init, the delta for content-delta / content-map) of every
 *   item the old model learned (one of its warm items) is copied to that item's row in the new model, matched by id.
 * - Every other item keeps the new model's start: its content with a zero delta (content-delta, content-map), its
 *   projected content (content-init) or a fresh random row (id). That covers items that were cold in the old model
 *   and are warm now, and items new to the catalog.
 * - `carryRows: false` copies only the dense weights (and content-map's map): every item keeps the new model's start.
 * - content-map: the learned map (W, b) is copied unless `keepMap` is false (the map is then the new model's own,
 *   e.g. refitted from the new warm items).
 * Optimizer state is not part of a model: training after a warm start begins with fresh Adam moments.
 */
import type { SASRec, SASRecConfig } from './sasrec.js';

/** Configuration fields that fix the shapes (and meaning) of the dense weights and of content-map's map. */
const ARCHITECTURE = [
  'strategy',
  'd',
  'blocks',
  'heads',
  'ffWidth',
  'maxLength',
  'contentDim',
  'activation',
] as const satisfies readonly (keyof SASRecConfig)[];

export interface WarmStartResult {
  /** New-model items whose trainable row came from the old model. */
  carried: number;
  /** Items cold in the old model (known, but never trained) that start from content here. */
  formerlyCold: number;
  /** Items the old model did not know. */
  unseen: number;
  /** Whether the carried items' trainable rows were copied ('old') or left at the new model's start ('fresh'). */
  rows: 'old' | 'fresh';
}

/** The architecture fields of a configuration (a new model built with them can take over the weights). */
export function architectureOf(config: SASRecConfig): Partial<SASRecConfig> {
  const out: Partial<SASRecConfig> = {};
  for (const key of ARCHITECTURE)
    if (config[key] !== undefined) (out as Record<string, unknown>)[key] = config[key];
  return out;
}

/** Differences in architecture between two configurations, as `name old -> new` strings (empty when compatible). */
export function architectureDifferences(old: SASRecConfig, next: SASRecConfig): string[] {
  const out: string[] = [];
  for (const key of ARCHITECTURE) {
    if (old[key] !== next[key]) out.push(`${key} ${String(old[key])} -> ${String(next[key])}`);
  }
  return out;
}

export function warmStart(
  model: SASRec,
  itemIds: readonly string[],
  old: SASRec,
  oldItemIds: readonly string[],
  oldNumWarm: number,
  options: { keepMap?: boolean; carryRows?: boolean } = {},
): WarmStartResult {
  const differences = architectureDifferences(old.config, model.config);
  if (differences.length > 0) {
    throw new Error(`warm start: the old model's architecture differs (${differences.join(', ')})`);
  }
  if (itemIds.length < model.numItems + 1) {
    throw new Error(`warm start: ${itemIds.length - 1} item ids for a model of ${model.numItems} items`);
  }
  model.params.flat.set(old.params.flat);
  const d = model.config.d;
  const oldIndex = new Map<string, number>();
  for (let i = 1; i < oldItemIds.length; i++) oldIndex.set(oldItemIds[i], i);
  const next = model.items.weight;
  const from = old.items.weight;
  const carryRows = options.carryRows ?? true;
  const result: WarmStartResult = {
    carried: 0,
    formerlyCold: 0,
    unseen: 0,
    rows: carryRows ? 'old' : 'fresh',
  };
  for (let i = 1; i <= model.numItems; i++) {
    const j = oldIndex.get(itemIds[i]);
    if (j === undefined) result.unseen++;
    else if (j > oldNumWarm) result.formerlyCold++;
    else {
      result.carried++;
      if (next && from && carryRows) next.set(from.subarray(j * d, (j + 1) * d), i * d);
    }
  }
  if (model.config.strategy === 'content-map' && (options.keepMap ?? true)) {
    model.items.initMap(old.items.mapWeight!, old.items.mapBias!);
  }
  model.parametersChanged();
  return result;
}
