import { writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { evaluate, load, withBorrowedDeltas } from '../../api.js';
import { loadSplit } from '../../data/store.js';
import { intOption, listOption, withNegativeNumbers } from '../options.js';
import { SEGMENTS } from '../../experiment/report.js';

export const summary = 'evaluate a saved model on a prepared split (cold / warm / all, full-catalog ranking)';

const HELP = `usage: deltarec evaluate --model MODELDIR --split DIR [options]

Ranks the whole catalog for every test case of the split (PROTOCOL.md) and prints HR@K, NDCG@K, MRR and catalog
coverage for cold, warm and all cases.

  --model DIR        model directory from \`deltarec train\` (required)
  --split DIR        the prepared split the model was trained on (required)
  --mode M           default | headline | warm-only | all
                       default: the model's own mode (plain SASRec: warm-only; content models: headline)
                       headline: cold items are candidates, cold inputs kept
                       warm-only: cold items are neither candidates nor inputs
                       all: the four combinations of --recommend-cold and --filter-cold-inputs
  --recommend-cold true|false      set the mode explicitly
  --filter-cold-inputs true|false
  --borrow-deltas K  evaluate with borrowed deltas for the cold items (K nearest warm items by content cosine;
                     0: zero deltas, the paper), whatever the model was saved with (docs/cold-start.md)
  --keep-seen        do not remove the input's items from the ranking
  --ks 1,10,20       cutoffs (default 10)
  --batch-size N     test cases scored together (default 256)
  --json F           write the metrics as JSON
`;

function bool(value: string | undefined, name: string): boolean | undefined {
  if (value === undefined) return undefined;
  if (value !== 'true' && value !== 'false')
    throw new Error(`--${name} must be true or false (got '${value}')`);
  return value === 'true';
}

export async function run(args: string[]): Promise<number> {
  let values;
  try {
    values = parseArgs({
      args: withNegativeNumbers(args),
      options: {
        model: { type: 'string' },
        split: { type: 'string' },
        mode: { type: 'string' },
        'recommend-cold': { type: 'string' },
        'filter-cold-inputs': { type: 'string' },
        'keep-seen': { type: 'boolean' },
        'borrow-deltas': { type: 'string' },
        ks: { type: 'string' },
        'batch-size': { type: 'string' },
        json: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }).values;
  } catch (error) {
    console.error(`deltarec evaluate: ${(error as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  try {
    if (!values.model || !values.split) throw new Error('--model DIR and --split DIR are required');
    const ks = (listOption(values.ks) ?? ['10']).map((k) => intOption(k, 'ks', 1)!);
    const mode = values.mode ?? 'default';
    const modes: { recommendColdItems?: boolean; filterColdInputs?: boolean }[] =
      mode === 'all'
        ? [
            { recommendColdItems: true, filterColdInputs: false },
            { recommendColdItems: true, filterColdInputs: true },
            { recommendColdItems: false, filterColdInputs: false },
            { recommendColdItems: false, filterColdInputs: true },
          ]
        : mode === 'headline'
          ? [{ recommendColdItems: true, filterColdInputs: false }]
          : mode === 'warm-only'
            ? [{ recommendColdItems: false, filterColdInputs: true }]
            : mode === 'default'
              ? [{}]
              : (() => {
                  throw new Error(`--mode must be default, headline, warm-only or all (got '${mode}')`);
                })();
    const explicit = {
      recommendColdItems: bool(values['recommend-cold'], 'recommend-cold'),
      filterColdInputs: bool(values['filter-cold-inputs'], 'filter-cold-inputs'),
    };
    const batchSize = intOption(values['batch-size'], 'batch-size', 1);
    const borrow = intOption(values['borrow-deltas'], 'borrow-deltas', 0);
    const model = await load(values.model);
    if (borrow !== undefined) withBorrowedDeltas(model, borrow);
    const split = await loadSplit(values.split);
    const out: Record<string, unknown>[] = [];
    for (const m of modes) {
      const options = {
        ...m,
        removeSeen: !values['keep-seen'],
        ks,
        batchSize,
      };
      if (explicit.recommendColdItems !== undefined) options.recommendColdItems = explicit.recommendColdItems;
      if (explicit.filterColdInputs !== undefined) options.filterColdInputs = explicit.filterColdInputs;
      const r = evaluate(model, split, options);
      console.log(
        `\n${model.kind}: recommendColdItems=${r.options.recommendColdItems} filterColdInputs=${r.options.filterColdInputs} removeSeen=${r.options.removeSeen}` +
          (r.emptyInputs ? ` (${r.emptyInputs} cases with an empty input after filtering)` : ''),
      );
      const keys = Object.keys(r.all).filter((k) => k !== 'count');
      console.log(
        ['segment', 'cases', ...keys].map((h, i) => (i === 0 ? h.padEnd(8) : h.padStart(12))).join(''),
      );
      for (const s of SEGMENTS) {
        console.log(
          [
            s.padEnd(8),
            String(r[s].count).padStart(12),
            ...keys.map((k) => r[s][k].toFixed(4).padStart(12)),
          ].join(''),
        );
      }
      out.push({ options: r.options, emptyInputs: r.emptyInputs, cold: r.cold, warm: r.warm, all: r.all });
    }
    if (values.json)
      await writeFile(values.json, JSON.stringify(out.length === 1 ? out[0] : out, null, 2) + '\n');
    return 0;
  } catch (error) {
    console.error(`deltarec evaluate: ${(error as Error).message}`);
    return 1;
  }
}
