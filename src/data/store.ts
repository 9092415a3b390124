/**
 * On-disk format of a prepared split (docs/data-format.md): a directory with manifest.json, stats.json, items.tsv,
 * test_users.tsv and little-endian binary arrays (*.i32, *.u8). Written to a temporary sibling directory and renamed,
 * so a failed write never leaves a partial split behind.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { endianness } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { DataError } from './errors.js';
import type { PreparedSplit, Sequences, SplitStats } from './types.js';

export const SPLIT_FORMAT = 'deltarec-split';
export const SPLIT_FORMAT_VERSION = 1;

export interface SplitManifest {
  format: typeof SPLIT_FORMAT;
  version: number;
  protocol: PreparedSplit['protocol'];
  numItems: number;
  numWarm: number;
  trainSequences: number;
  validationCases: number;
  testCases: number;
  /** Free-form provenance: input files, split options. */
  meta: Record<string, unknown>;
  created: string;
}

const ARRAYS = [
  'train.offsets.i32',
  'train.items.i32',
  'validation.offsets.i32',
  'validation.items.i32',
  'validation.targets.i32',
  'test.offsets.i32',
  'test.items.i32',
  'test.targets.i32',
  'test.cold.u8',
  'train_item_counts.i32',
] as const;

/** Backslash escapes for a TSV cell: \\ \t \n \r. */
export function escapeTsv(text: string): string {
  return text.replace(/[\\\t\n\r]/g, (c) =>
    c === '\\' ? '\\\\' : c === '\t' ? '\\t' : c === '\n' ? '\\n' : '\\r',
  );
}

export function unescapeTsv(text: string): string {
  return text.replace(/\\([\\tnr])/g, (_, c: string) =>
    c === '\\' ? '\\' : c === 't' ? '\t' : c === 'n' ? '\n' : '\r',
  );
}

/** One escaped id per line. */
function idLines(ids: string[]): string {
  return ids.length ? ids.map(escapeTsv).join('\n') + '\n' : '';
}

/** The ids of an idLines file, or undefined when the (optional) file is absent; checks the count. */
async function readIdLines(file: string, expected: number, optional: boolean): Promise<string[] | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if (optional && (error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  const ids = text.split('\n').slice(0, expected).map(unescapeTsv);
  if (ids.length !== expected) throw new DataError(file, `expected ${expected} ids, found ${ids.length}`);
  return ids;
}

function bytesOf(array: Int32Array | Uint8Array): Buffer {
  return Buffer.from(array.buffer, array.byteOffset, array.byteLength);
}

function checkEndianness(): void {
  if (endianness() !== 'LE')
    throw new Error('deltarec split files are little-endian; this platform is big-endian');
}

/** True when dir does not exist or is empty or holds a deltarec split (which may be replaced). */
async function replaceable(dir: string): Promise<boolean> {
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return true;
    if (code === 'ENOTDIR') return false;
    throw error;
  }
  if (entries.length === 0) return true;
  try {
    const manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as { format?: string };
    return manifest.format === SPLIT_FORMAT;
  } catch {
    return false;
  }
}

/**
 * Writes files into a fresh temporary sibling of dir via write(tmp), then moves it to dir (replacing an older
 * output of the same kind). On failure the temporary directory is removed and dir is left as it was.
 */
export async function writeDirectoryAtomically(
  dir: string,
  write: (tmp: string) => Promise<void>,
  isReplaceable: (dir: string) => Promise<boolean> = replaceable,
): Promise<void> {
  const parent = dirname(dir);
  await mkdir(parent, { recursive: true });
  if (!(await isReplaceable(dir))) {
    throw new Error(`${dir}: exists and is not empty; refusing to overwrite it (choose another --out)`);
  }
  const suffix = `${process.pid}-${randomBytes(4).toString('hex')}`;
  const tmp = join(parent, `.${basename(dir)}.tmp-${suffix}`);
  const old = join(parent, `.${basename(dir)}.old-${suffix}`);
  await mkdir(tmp);
  try {
    await write(tmp);
    let moved = false;
    try {
      await rename(dir, old);
      moved = true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
    try {
      await rename(tmp, dir);
    } catch (error) {
      if (moved) await rename(old, dir);
      throw error;
    }
    if (moved) await rm(old, { recursive: true, force: true });
  } catch (error) {
    await rm(tmp, { recursive: true, force: true });
    throw error;
  }
}

/** Saves a split to dir (see docs/data-format.md). meta is stored in the manifest (input files, options). */
export async function saveSplit(
  dir: string,
  split: PreparedSplit,
  meta: Record<string, unknown> = {},
): Promise<void> {
  checkEndianness();
  const arrays: Record<(typeof ARRAYS)[number], Int32Array | Uint8Array> = {
    'train.offsets.i32': split.train.offsets,
    'train.items.i32': split.train.items,
    'validation.offsets.i32': split.validation.inputs.offsets,
    'validation.items.i32': split.validation.inputs.items,
    'validation.targets.i32': split.validation.targets,
    'test.offsets.i32': split.test.inputs.offsets,
    'test.items.i32': split.test.inputs.items,
    'test.targets.i32': split.test.targets,
    'test.cold.u8': split.test.cold,
    'train_item_counts.i32': split.trainItemCounts,
  };
  const manifest: SplitManifest = {
    format: SPLIT_FORMAT,
    version: SPLIT_FORMAT_VERSION,
    protocol: split.protocol,
    numItems: split.numItems,
    numWarm: split.numWarm,
    trainSequences: split.train.offsets.length - 1,
    validationCases: split.validation.targets.length,
    testCases: split.test.targets.length,
    meta,
    created: new Date().toISOString(),
  };
  await writeDirectoryAtomically(dir, async (tmp) => {
    const items = ['index\titem_id\twarm\ttrain_count'];
    for (let k = 1; k <= split.numItems; k++) {
      items.push(
        `${k}\t${escapeTsv(split.itemIds[k])}\t${k <= split.numWarm ? 1 : 0}\t${split.trainItemCounts[k]}`,
      );
    }
    await writeFile(join(tmp, 'items.tsv'), items.join('\n') + '\n');
    await writeFile(join(tmp, 'test_users.tsv'), idLines(split.test.users));
    if (split.trainUsers) await writeFile(join(tmp, 'train_users.tsv'), idLines(split.trainUsers));
    if (split.validation.users)
      await writeFile(join(tmp, 'validation_users.tsv'), idLines(split.validation.users));
    for (const name of ARRAYS) await writeFile(join(tmp, name), bytesOf(arrays[name]));
    await writeFile(join(tmp, 'stats.json'), JSON.stringify(split.stats, null, 2) + '\n');
    // The manifest is written last: a directory with a manifest is complete.
    await writeFile(join(tmp, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n');
  });
}

async function readArray(dir: string, name: string): Promise<Int32Array | Uint8Array> {
  const buf = await readFile(join(dir, name));
  if (name.endsWith('.u8'))
    return new Uint8Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length));
  if (buf.length % 4 !== 0) throw new DataError(join(dir, name), `size ${buf.length} is not a multiple of 4`);
  return new Int32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length));
}

function checkSequences(file: string, seq: Sequences, numItems: number): void {
  const { offsets, items } = seq;
  if (offsets.length === 0 || offsets[0] !== 0 || offsets[offsets.length - 1] !== items.length) {
    throw new DataError(file, 'offsets do not match the items array');
  }
  for (let s = 1; s < offsets.length; s++) {
    if (offsets[s] < offsets[s - 1]) throw new DataError(file, `offsets decrease at sequence ${s}`);
  }
  for (let k = 0; k < items.length; k++) {
    if (items[k] < 1 || items[k] > numItems)
      throw new DataError(file, `item index ${items[k]} out of range 1..${numItems}`);
  }
}

/** Reads the item id column of items.tsv (index order) with its checks. */
async function readItemIds(dir: string, numItems: number): Promise<string[]> {
  const file = join(dir, 'items.tsv');
  const lines = (await readFile(file, 'utf8')).split('\n');
  const itemIds = [''];
  for (let k = 1; k <= numItems; k++) {
    const cells = (lines[k] ?? '').split('\t');
    if (cells.length < 2 || Number(cells[0]) !== k)
      throw new DataError(file, `expected item index ${k}`, k + 1, 'index');
    itemIds.push(unescapeTsv(cells[1]));
  }
  return itemIds;
}

/** Reads a split written by saveSplit, checking the format version and array shapes. */
export async function loadSplit(dir: string): Promise<PreparedSplit> {
  checkEndianness();
  const manifestFile = join(dir, 'manifest.json');
  try {
    await stat(manifestFile);
  } catch {
    throw new DataError(dir, 'not a prepared split directory (no manifest.json; run `deltarec prepare`)');
  }
  const manifest = JSON.parse(await readFile(manifestFile, 'utf8')) as SplitManifest;
  if (manifest.format !== SPLIT_FORMAT) throw new DataError(manifestFile, `format is not '${SPLIT_FORMAT}'`);
  if (manifest.version !== SPLIT_FORMAT_VERSION) {
    throw new DataError(
      manifestFile,
      `format version ${manifest.version} is not supported (expected ${SPLIT_FORMAT_VERSION})`,
    );
  }
  const a: Record<string, Int32Array | Uint8Array> = {};
  for (const name of ARRAYS) a[name] = await readArray(dir, name);
  const numItems = manifest.numItems;
  const train = { offsets: a['train.offsets.i32'] as Int32Array, items: a['train.items.i32'] as Int32Array };
  const validation = {
    inputs: {
      offsets: a['validation.offsets.i32'] as Int32Array,
      items: a['validation.items.i32'] as Int32Array,
    },
    targets: a['validation.targets.i32'] as Int32Array,
  };
  const testInputs = {
    offsets: a['test.offsets.i32'] as Int32Array,
    items: a['test.items.i32'] as Int32Array,
  };
  checkSequences(join(dir, 'train.items.i32'), train, manifest.numWarm);
  checkSequences(join(dir, 'validation.items.i32'), validation.inputs, numItems);
  checkSequences(join(dir, 'test.items.i32'), testInputs, numItems);
  const testTargets = a['test.targets.i32'] as Int32Array;
  const cold = a['test.cold.u8'] as Uint8Array;
  const users = (await readIdLines(join(dir, 'test_users.tsv'), testTargets.length, false))!;
  const trainUsers = await readIdLines(join(dir, 'train_users.tsv'), train.offsets.length - 1, true);
  const validationUsers = await readIdLines(
    join(dir, 'validation_users.tsv'),
    validation.targets.length,
    true,
  );
  if (
    validation.targets.length !== validation.inputs.offsets.length - 1 ||
    testTargets.length !== testInputs.offsets.length - 1 ||
    cold.length !== testTargets.length
  ) {
    throw new DataError(dir, 'inconsistent case counts between the split files');
  }
  const trainItemCounts = a['train_item_counts.i32'] as Int32Array;
  if (trainItemCounts.length !== numItems + 1)
    throw new DataError(join(dir, 'train_item_counts.i32'), 'wrong length');
  const stats = JSON.parse(await readFile(join(dir, 'stats.json'), 'utf8')) as SplitStats;
  return {
    protocol: manifest.protocol,
    itemIds: await readItemIds(dir, numItems),
    numWarm: manifest.numWarm,
    numItems,
    train,
    ...(trainUsers ? { trainUsers } : {}),
    validation: { ...validation, ...(validationUsers ? { users: validationUsers } : {}) },
    test: { inputs: testInputs, targets: testTargets, cold, users },
    trainItemCounts,
    stats,
  };
}

/** The manifest of a split directory (cheap: no arrays are read). */
export async function readSplitManifest(dir: string): Promise<SplitManifest> {
  return JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as SplitManifest;
}
