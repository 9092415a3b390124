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
 * - Shrink and perturb (Ash & Adams, "On Warm-Starting Neural Network Training", NeurIPS 2020): every carried value
 *   becomes `shrink * old + perturb * start`, where `start` is the new model's own (seeded) initialization of that
 *   value: Xavier-normal weights and positions, unit layer-norm gains and zero biases, an item's start row (a zero
 *   delta, its projected content, a fresh random row), content-map's starting map. shrink 1, perturb 0 (the
 *   defaults) carry the old values unchanged; shrink 1 - p, perturb p moves them a fraction p of the way back to
 *   the start.
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
  /** The shrink and perturb factors applied (1 and 0: the old values unchanged). */
  shrink: number;
  perturb: number;
}

export interface WarmStartOptions {
  /** content-map: take the old model's map (default true); false keeps the new model's own. */
  keepMap?: boolean;
  /** Copy the old trainable rows of the items the old model was trained on (default true). */
  carryRows?: boolean;
  /** Factor on every carried old value, in [0, 1] (default 1). */
  shrink?: number;
  /** Factor on the new model's initialization added to it, in [0, 1] (default 0). */
  perturb?: number;
}

/** Checks a shrink or perturb factor (named as the caller's option) and returns it. */
export function checkShrinkPerturb(value: number, name: string): number {
  if (!(Number.isFinite(value) && value >= 0 && value <= 1))
    throw new Error(`${name} must be a number in [0, 1] (got ${value})`);
  return value;
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
  options: WarmStartOptions = {},
): WarmStartResult {
  const shrink = checkShrinkPerturb(options.shrink ?? 1, 'warm start: shrink');
  const perturb = checkShrinkPerturb(options.perturb ?? 0, 'warm start: perturb');
  const differences = architectureDifferences(old.config, model.config);
  if (differences.length > 0) {
    throw new Error(`warm start: the old model's architecture differs (${differences.join(', ')})`);
  }
  if (itemIds.length < model.numItems + 1) {
    throw new Error(`warm start: ${itemIds.length - 1} item ids for a model of ${model.numItems} items`);
  }
  mix(model.params.flat, old.params.flat, shrink, perturb);
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
    shrink,
    perturb,
  };
  for (let i = 1; i <= model.numItems; i++) {
    const j = oldIndex.get(itemIds[i]);
    if (j === undefined) result.unseen++;
    else if (j > oldNumWarm) result.formerlyCold++;
    else {
      result.carried++;
      if (next && from && carryRows)
        mix(next.subarray(i * d, (i + 1) * d), from.subarray(j * d, (j + 1) * d), shrink, perturb);
    }
  }
  if (model.config.strategy === 'content-map' && (options.keepMap ?? true)) {
    const weight = Float32Array.from(model.items.mapWeight!);
    const bias = Float32Array.from(model.items.mapBias!);
    mix(weight, old.items.mapWeight!, shrink, perturb);
    mix(bias, old.items.mapBias!, shrink, perturb);
    model.items.initMap(weight, bias);
  }
  model.parametersChanged();
  return result;
}

/** target = shrink * old + perturb * target (target holds the new model's start); a plain copy for 1 and 0. */
function mix(target: Float32Array, old: Float32Array, shrink: number, perturb: number): void {
  if (shrink === 1 && perturb === 0) {
    target.set(old);
    return;
  }
  for (let i = 0; i < target.length; i++) target[i] = shrink * old[i] + perturb * target[i];
}
