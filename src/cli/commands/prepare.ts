import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { DataError } from '../../data/errors.js';
import { readCatalog, readInteractions } from '../../data/readers.js';
import { alignCatalog, DEFAULT_SPLIT_OPTIONS, prepareSplit, type SplitOptions } from '../../data/split.js';
import { saveSplit } from '../../data/store.js';
import type { SplitStats } from '../../data/types.js';
import { backtestSplit } from '../../eval/data.js';
import { withNegativeNumbers } from '../options.js';

export const summary =
  'read interactions (+ catalog), run the evaluation protocol split, write it to a directory';

const HELP = `usage: deltarec prepare --interactions FILE [--items FILE] --out DIR [options]

Reads interactions (CSV/TSV, plain or .gz, JSON Lines, Parquet), applies the protocol of PROTOCOL.md and writes the
prepared split to DIR (format: docs/data-format.md) including DIR/stats.json, then prints the statistics.

input:
  --interactions FILE      interactions file (user, item, timestamp[, rating])
  --items FILE             item catalog; items of the interactions missing from it are a warning (an error with --strict)
  --user-col NAME          user id column (default: user_id, userid, user, ...; case-insensitive)
  --item-col NAME          item id column (default: item_id, itemid, item, asin, ...)
  --time-col NAME          timestamp column: unix s/ms or ISO-8601 (default: timestamp, time, ts, ... if present)
  --rating-col NAME        rating column (default: rating, score, ... if present)
  --catalog-item-col NAME  item id column of the catalog (default: as --item-col, else auto)
split (defaults are the paper's):
  --min-rating X|none      keep ratings >= X when the data has ratings (default ${DEFAULT_SPLIT_OPTIONS.minRating})
  --keep-duplicates        keep consecutive duplicate interactions (removed by default)
  --quantile Q             global temporal split quantile (default ${DEFAULT_SPLIT_OPTIONS.quantile})
  --n-core N               iterative n-core on train_val (default ${DEFAULT_SPLIT_OPTIONS.nCore})
  --val-share S            share of validation users (default ${DEFAULT_SPLIT_OPTIONS.validationShare})
  --seed N                 split seed (default ${DEFAULT_SPLIT_OPTIONS.seed})
  --protocol P             auto | temporal | leave-last-out (default auto: temporal when there are timestamps)
  --strict                 catalog items missing for interaction items are an error
  --backtest               write the backtest split instead: drop the test period (from the threshold T on) and
                           split what is left again with the same options (the inner split of experiments'
                           data.backtest; e.g. the earlier period a later model warm-starts from)
  --same-validation-users  with --backtest: the backtest split's validation users are the full split's, not a new
                           seeded share, so a model trained on it never trains on them (use it for the model that
                           a warm start on the full split starts from: docs/retraining.md)
output:
  --out DIR                output directory (replaced if it holds an earlier split; never left half-written)`;

function numberOption(
  name: string,
  value: string | undefined,
  fallback: number,
  integer = false,
  range?: { min: number; max: number; maxIncluded: boolean },
): number {
  if (value === undefined) return fallback;
  const x = Number(value);
  if (value.trim() === '' || !Number.isFinite(x) || (integer && !Number.isInteger(x))) {
    throw new UsageError(`--${name} expects ${integer ? 'an integer' : 'a number'}, got '${value}'`);
  }
  if (range && (x < range.min || x > range.max || (!range.maxIncluded && x === range.max))) {
    const upper = range.max === Infinity ? '' : ` and ${range.maxIncluded ? '<=' : '<'} ${range.max}`;
    throw new UsageError(`--${name} must be >= ${range.min}${upper}, got '${value}'`);
  }
  return x;
}

class UsageError extends Error {}

const percent = (x: number) => `${(100 * x).toFixed(1)} %`;
const count = (x: number) => x.toLocaleString('en-US');

/** The statistics as an aligned two-column table. */
export function statsTable(stats: SplitStats): string {
  const T = stats.threshold_timestamp;
  const rows: [string, string][] = [
    ['protocol', stats.protocol],
    ['interactions', count(stats.interactions)],
    ['users', count(stats.users)],
    ['items', count(stats.items)],
    ['average sequence length', stats.avg_sequence_length.toFixed(2)],
    ['consecutive duplicates removed', count(stats.consecutive_duplicates_removed)],
    [
      'threshold T',
      T === null ? '- (no timestamps)' : `${T} (${new Date(T * 1000).toISOString().slice(0, 10)})`,
    ],
    ['train_val interactions (n-core)', count(stats.train_val_interactions)],
    ['train users', count(stats.train_users)],
    ['validation users', count(stats.val_users)],
    ['warm items', count(stats.warm_items)],
    ['cold items', count(stats.cold_items)],
    ['test users', count(stats.test_users)],
    ['test users without input (left out)', count(stats.test_users_without_input)],
    ['cold ground truth share', percent(stats.cold_test_share)],
    ['cold items in inputs share', percent(stats.cold_input_share)],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  const valueWidth = Math.max(...rows.map(([, v]) => v.length));
  return rows.map(([k, v]) => `  ${k.padEnd(width)}  ${v.padStart(valueWidth)}`).join('\n');
}

export async function run(args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: withNegativeNumbers(args),
      options: {
        interactions: { type: 'string' },
        items: { type: 'string' },
        'user-col': { type: 'string' },
        'item-col': { type: 'string' },
        'time-col': { type: 'string' },
        'rating-col': { type: 'string' },
        'catalog-item-col': { type: 'string' },
        'min-rating': { type: 'string' },
        'keep-duplicates': { type: 'boolean' },
        quantile: { type: 'string' },
        'n-core': { type: 'string' },
        'val-share': { type: 'string' },
        seed: { type: 'string' },
        protocol: { type: 'string' },
        strict: { type: 'boolean' },
        backtest: { type: 'boolean' },
        'same-validation-users': { type: 'boolean' },
        out: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (error) {
    console.error(`deltarec prepare: ${(error as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  let options: SplitOptions;
  try {
    if (!values.interactions || !values.out) throw new UsageError('--interactions and --out are required');
    const protocol = values.protocol ?? 'auto';
    if (protocol !== 'auto' && protocol !== 'temporal' && protocol !== 'leave-last-out') {
      throw new UsageError(`--protocol must be auto, temporal or leave-last-out, got '${protocol}'`);
    }
    if (values['same-validation-users'] && !values.backtest)
      throw new UsageError('--same-validation-users applies to --backtest');
    const minRating =
      values['min-rating'] === 'none'
        ? null
        : numberOption('min-rating', values['min-rating'], DEFAULT_SPLIT_OPTIONS.minRating ?? 4);
    options = {
      minRating,
      removeConsecutiveDuplicates: !values['keep-duplicates'],
      quantile: numberOption('quantile', values.quantile, DEFAULT_SPLIT_OPTIONS.quantile, false, {
        min: 0,
        max: 1,
        maxIncluded: true,
      }),
      nCore: numberOption('n-core', values['n-core'], DEFAULT_SPLIT_OPTIONS.nCore, true, {
        min: 0,
        max: Infinity,
        maxIncluded: true,
      }),
      validationShare: numberOption(
        'val-share',
        values['val-share'],
        DEFAULT_SPLIT_OPTIONS.validationShare,
        false,
        { min: 0, max: 1, maxIncluded: false },
      ),
      seed: numberOption('seed', values.seed, DEFAULT_SPLIT_OPTIONS.seed, true),
      protocol,
    };
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(`deltarec prepare: ${error.message}\n\n${HELP}`);
    return 2;
  }

  try {
    const started = performance.now();
    const read = {
      userCol: values['user-col'],
      itemCol: values['item-col'],
      timeCol: values['time-col'],
      ratingCol: values['rating-col'],
    };
    const interactions = await readInteractions(values.interactions!, read);
    const readSeconds = (performance.now() - started) / 1000;
    console.error(
      `read ${count(interactions.users.length)} interactions from ${values.interactions} in ${readSeconds.toFixed(2)} s`,
    );
    let split = prepareSplit(interactions, options);
    if (split.protocol === 'leave-last-out' && options.protocol === 'auto') {
      console.error('note: the data has no timestamps; using the leave-last-out fallback split');
    }
    const meta: Record<string, unknown> = {
      interactions: resolve(values.interactions!),
      read,
      options,
    };
    if (values.backtest) {
      const inner = backtestSplit(interactions, split, options, {
        sameValidationUsers: values['same-validation-users'],
      });
      split = inner.split;
      meta.backtest = inner.note;
      console.error(inner.note);
    }
    if (split.stats.rating_filtered) {
      console.error(
        `the rating filter (--min-rating ${options.minRating}) dropped ${count(split.stats.rating_filtered)} of ` +
          `${count(interactions.users.length)} interactions`,
      );
    }
    if (values.items) {
      const catalog = await readCatalog(values.items, {
        itemCol: values['catalog-item-col'] ?? values['item-col'],
      });
      const alignment = alignCatalog(split, catalog, { strict: values.strict });
      if (alignment.missing > 0) {
        console.error(
          `warning: ${count(alignment.missing)} item(s) occurring in the interactions are missing from ${values.items}` +
            ` (e.g. ${alignment.missingExamples.map((id) => `'${id}'`).join(', ')}); they will have no content` +
            ' (use --strict to make this an error)',
        );
      }
      meta.items = resolve(values.items);
      if (alignment.extra > 0) {
        console.error(
          `note: ${count(alignment.extra)} of ${count(catalog.ids.length)} catalog items have no interactions in the ` +
            `split (they are not part of it; \`deltarec serve\` can add them as new items)`,
        );
      }
      meta.catalog = {
        rows: catalog.ids.length,
        missing_items: alignment.missing,
        extra_rows: alignment.extra,
      };
    }
    await saveSplit(values.out!, split, meta);
    const seconds = (performance.now() - started) / 1000;
    console.log(`prepared split -> ${values.out} (${seconds.toFixed(2)} s)\n${statsTable(split.stats)}`);
    return 0;
  } catch (error) {
    if (
      error instanceof DataError ||
      (error instanceof Error && /refusing to overwrite/.test(error.message))
    ) {
      console.error(`deltarec prepare: error: ${error.message}`);
      return 1;
    }
    if (error instanceof RangeError) {
      console.error(`deltarec prepare: ${error.message}`);
      return 2;
    }
    throw error;
  }
}
