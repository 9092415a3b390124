import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { withNegativeNumbers } from '../options.js';
import { writeDirectoryAtomically } from '../../data/store.js';
import { DEFAULT_SYNTHETIC_OPTIONS } from '../../data/synthetic.js';
import {
  generatePreset,
  PRESETS,
  writeDataset,
  type CommonOptions,
  type PresetName,
} from '../../data/synthetic-presets.js';

export const summary =
  'write the built-in synthetic dataset (interactions.csv + items.csv), or a scale preset';

const d = DEFAULT_SYNTHETIC_OPTIONS;
const HELP = `usage: deltarec generate --out DIR [--preset zvuk|shop] [--format csv|parquet] [--users N] [--items N]
                        [--topics N] [--mean-length X] [--seed N]

Writes DIR/interactions.csv (user_id,item_id,timestamp), DIR/items.csv (item_id,title,description,category) and
DIR/synthetic.json (the options used). Items have text from latent topics; sequences follow a Markov chain over
topics with item popularity; items keep being introduced, so cold items appear after the split threshold.

  --preset P        a large-catalog preset (docs/large-catalogs.md); the options below override its settings:
                      zvuk: 9,076 users, 131,085 tracks, ~3.2 M plays of music listening (artists, albums, Zipf
                            popularity, repeats, album order, per-track successors, new releases), 128-d track vectors
                            of topic + artist + album (vectors.csv, or with --format parquet the Zvuk schema:
                            zvuk-interactions.parquet + zvuk-track-vectors.parquet for the zvuk recipe); with --items
                            and no --topics, one topic per 512 tracks (a scaled-down zvuk keeps its structure)
                      shop: 1,000,000 items with text fields, 200,000 users, ~1.9 M interactions
  --format F        csv (default) or parquet (interactions.parquet + items.parquet)
  --users N         users (default ${d.users})
  --items N         items (default ${d.items})
  --topics N        latent topics (default ${d.topics})
  --mean-length X   mean interactions per user, at least 3 each (default ${d.meanLength})
  --seed N          seed (default ${d.seed})
  --out DIR         output directory (replaced if it holds an earlier generated dataset)`;

const GENERATED = new Set([
  'interactions.csv',
  'items.csv',
  'vectors.csv',
  'interactions.parquet',
  'items.parquet',
  'zvuk-interactions.parquet',
  'zvuk-track-vectors.parquet',
  'synthetic.json',
]);

/** A directory that is absent, empty, or an earlier output of this command may be replaced. */
async function replaceable(dir: string): Promise<boolean> {
  try {
    const entries = await readdir(dir);
    if (entries.length === 0) return true;
    if (!entries.every((e) => GENERATED.has(e))) return false;
    const marker = JSON.parse(await readFile(join(dir, 'synthetic.json'), 'utf8')) as { generator?: string };
    return marker.generator === 'deltarec';
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ENOENT';
  }
}

export async function run(args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: withNegativeNumbers(args),
      options: {
        out: { type: 'string' },
        users: { type: 'string' },
        items: { type: 'string' },
        topics: { type: 'string' },
        'mean-length': { type: 'string' },
        seed: { type: 'string' },
        preset: { type: 'string' },
        format: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (error) {
    console.error(`deltarec generate: ${(error as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  if (!values.out) {
    console.error(`deltarec generate: --out is required\n\n${HELP}`);
    return 2;
  }
  const preset = (values.preset ?? null) as PresetName | null;
  if (preset !== null && !(preset in PRESETS)) {
    console.error(
      `deltarec generate: --preset must be one of ${Object.keys(PRESETS).join(', ')}, got '${preset}'`,
    );
    return 2;
  }
  const format = values.format ?? 'csv';
  if (format !== 'csv' && format !== 'parquet') {
    console.error(`deltarec generate: --format must be csv or parquet, got '${format}'`);
    return 2;
  }
  const options: Partial<CommonOptions> = {};
  for (const [flag, key, integer] of [
    ['users', 'users', true],
    ['items', 'items', true],
    ['topics', 'topics', true],
    ['mean-length', 'meanLength', false],
    ['seed', 'seed', true],
  ] as const) {
    const text = values[flag];
    if (text === undefined) continue;
    const x = Number(text);
    if (text.trim() === '' || !Number.isFinite(x) || (integer && !Number.isInteger(x)) || x < 0) {
      console.error(
        `deltarec generate: --${flag} expects a non-negative ${integer ? 'integer' : 'number'}, got '${text}'`,
      );
      return 2;
    }
    options[key] = x;
  }
  const started = performance.now();
  let generated;
  try {
    generated = generatePreset(preset, options);
  } catch (error) {
    if (!(error instanceof RangeError)) throw error;
    console.error(`deltarec generate: ${error.message}`);
    return 2;
  }
  const { data } = generated;
  const out = values.out;
  let files: string[] = [];
  try {
    await writeDirectoryAtomically(
      out,
      async (tmp) => {
        files = await writeDataset(tmp, data, format, generated.vectors);
        const marker = {
          generator: 'deltarec',
          preset,
          format,
          options: generated.options,
          interactions: data.interactions.users.length,
          items: data.catalog.ids.length,
        };
        await writeFile(join(tmp, 'synthetic.json'), JSON.stringify(marker, null, 2) + '\n');
      },
      replaceable,
    );
  } catch (error) {
    console.error(`deltarec generate: error: ${(error as Error).message}`);
    return 1;
  }
  console.log(
    `wrote ${data.interactions.users.length.toLocaleString('en-US')} interactions of ${data.interactions.userIds.ids.length.toLocaleString('en-US')} users and ${data.catalog.ids.length.toLocaleString('en-US')} items to ${out}: ${files.join(', ')} (${((performance.now() - started) / 1000).toFixed(1)} s)`,
  );
  return 0;
}
