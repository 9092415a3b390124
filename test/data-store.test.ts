/** The split directory format (save/load, atomic writes) and the `prepare` / `generate` commands end to end. */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import { run as generate } from '../src/cli/commands/generate.js';
import { run as prepare } from '../src/cli/commands/prepare.js';
import { prepareSplit } from '../src/data/split.js';
import { escapeTsv, loadSplit, saveSplit, unescapeTsv, writeDirectoryAtomically } from '../src/data/store.js';
import { generateSynthetic } from '../src/data/synthetic.js';

let dir = '';
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'deltarec-store-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Runs a command with console output captured. */
async function capture(t: TestContext, command: (args: string[]) => Promise<number>, args: string[]) {
  const log = t.mock.method(console, 'log', () => {});
  const error = t.mock.method(console, 'error', () => {});
  const code = await command(args);
  const text = (calls: { arguments: unknown[] }[]) => calls.map((c) => c.arguments.join(' ')).join('\n');
  const result = { code, out: text(log.mock.calls), err: text(error.mock.calls) };
  log.mock.restore();
  error.mock.restore();
  return result;
}

describe('split store', () => {
  test('save then load gives the same split', async () => {
    const { interactions } = generateSynthetic({ users: 400, items: 300, seed: 2 });
    const split = prepareSplit(interactions);
    split.itemIds[1] = 'odd\tid\\with\nescapes'; // ids with TSV-special characters survive
    split.test.users[0] = 'user\twith tab';
    const out = join(dir, 'split');
    await saveSplit(out, split, { note: 'test' });
    const loaded = await loadSplit(out);
    assert.deepEqual(loaded, split);
    const manifest = JSON.parse(await readFile(join(out, 'manifest.json'), 'utf8'));
    assert.equal(manifest.format, 'deltarec-split');
    assert.equal(manifest.version, 1);
    assert.deepEqual(manifest.meta, { note: 'test' });
    // an earlier split may be replaced
    await saveSplit(out, prepareSplit(interactions, { seed: 9 }));
    assert.notDeepEqual((await loadSplit(out)).validation.users, split.validation.users);
    assert.deepEqual(
      (await readdir(dir)).filter((f) => f.startsWith('.')),
      [],
      'no temporary directories left',
    );
  });

  test('TSV escaping round-trips', () => {
    for (const text of ['plain', 'a\tb', 'a\\tb', 'line\nbreak\r', '\\\\'])
      assert.equal(unescapeTsv(escapeTsv(text)), text);
  });

  test('a failed write leaves neither a partial directory nor temporaries; others are not overwritten', async () => {
    const target = join(dir, 'atomic');
    await assert.rejects(
      writeDirectoryAtomically(target, async (tmp) => {
        await writeFile(join(tmp, 'half.bin'), 'x');
        throw new Error('disk full');
      }),
      /disk full/,
    );
    assert.equal(existsSync(target), false);
    assert.deepEqual(
      (await readdir(dir)).filter((f) => f.includes('atomic')),
      [],
    );
    const foreign = join(dir, 'foreign');
    await mkdir(foreign);
    await writeFile(join(foreign, 'precious.txt'), 'keep me');
    const split = prepareSplit(generateSynthetic({ users: 100, items: 100, seed: 1 }).interactions);
    await assert.rejects(saveSplit(foreign, split), /refusing to overwrite/);
    assert.equal(await readFile(join(foreign, 'precious.txt'), 'utf8'), 'keep me');
  });

  test('loadSplit rejects a directory that is not a split, and a wrong version', async () => {
    await assert.rejects(loadSplit(dir), /not a prepared split directory/);
    const out = join(dir, 'versioned');
    await saveSplit(out, prepareSplit(generateSynthetic({ users: 100, items: 100, seed: 1 }).interactions));
    const manifestPath = join(out, 'manifest.json');
    const manifest = JSON.parse(await readFile(manifestPath, 'utf8'));
    await writeFile(manifestPath, JSON.stringify({ ...manifest, version: 99 }));
    await assert.rejects(loadSplit(out), /format version 99 is not supported/);
  });
});

describe('deltarec generate + prepare', () => {
  test('generate writes the synthetic CSVs; prepare writes the split, stats.json and prints the table', async (t) => {
    const data = join(dir, 'synthetic');
    const generated = await capture(t, generate, [
      '--out',
      data,
      '--users',
      '500',
      '--items',
      '300',
      '--seed',
      '7',
    ]);
    assert.equal(generated.code, 0, generated.err);
    assert.deepEqual((await readdir(data)).sort(), ['interactions.csv', 'items.csv', 'synthetic.json']);
    const header = (await readFile(join(data, 'items.csv'), 'utf8')).split('\n')[0];
    assert.equal(header, 'item_id,title,description,category');

    const out = join(dir, 'prepared');
    const args = [
      '--interactions',
      join(data, 'interactions.csv'),
      '--items',
      join(data, 'items.csv'),
      '--out',
      out,
    ];
    const prepared = await capture(t, prepare, args);
    assert.equal(prepared.code, 0, prepared.err);
    for (const label of [
      'users',
      'items',
      'interactions',
      'average sequence length',
      'threshold T',
      'warm items',
      'test users',
      'cold ground truth share',
      'cold items in inputs share',
    ]) {
      assert.ok(prepared.out.includes(label), `table shows '${label}'`);
    }
    const stats = JSON.parse(await readFile(join(out, 'stats.json'), 'utf8'));
    for (const field of [
      'interactions',
      'users',
      'items',
      'threshold_timestamp',
      'train_val_interactions',
      'train_users',
      'val_users',
      'warm_items',
      'test_users',
      'cold_test_share',
      'cold_input_share',
    ]) {
      assert.equal(typeof stats[field], 'number', `stats.json has numeric ${field}`);
    }
    const split = await loadSplit(out);
    assert.equal(split.stats.test_users, stats.test_users);
    assert.equal(split.test.targets.length, stats.test_users);
    assert.ok(prepared.out.includes(stats.test_users.toLocaleString('en-US')));

    // same data and seed: identical split files
    const again = join(dir, 'prepared-again');
    assert.equal((await capture(t, prepare, [...args.slice(0, -1), again])).code, 0);
    for (const file of ['train.items.i32', 'validation.targets.i32', 'test.items.i32', 'items.tsv']) {
      assert.deepEqual(await readFile(join(again, file)), await readFile(join(out, file)), file);
    }
  });

  test('catalog missing items: a warning with a count, an error under --strict with no output left', async (t) => {
    const data = join(dir, 'missing');
    await mkdir(data);
    await writeFile(
      join(data, 'interactions.csv'),
      'user_id,item_id,timestamp\n' +
        ['a', 'b', 'c', 'd']
          .flatMap((u, k) => ['x', 'y', 'z', 'w'].map((i, j) => `${u},${i},${100 * k + j}`))
          .join('\n') +
        '\n',
    );
    await writeFile(join(data, 'items.csv'), 'item_id,title\nx,X\ny,Y\n');
    const out = join(dir, 'missing-out');
    const base = [
      '--interactions',
      join(data, 'interactions.csv'),
      '--items',
      join(data, 'items.csv'),
      '--out',
      out,
    ];
    const warned = await capture(t, prepare, base);
    assert.equal(warned.code, 0, warned.err);
    assert.match(
      warned.err,
      /warning: 2 item\(s\) occurring in the interactions are missing from .*items\.csv/,
    );
    assert.ok(existsSync(join(out, 'manifest.json')));

    const strictOut = join(dir, 'strict-out');
    const strict = await capture(t, prepare, [...base.slice(0, -1), strictOut, '--strict']);
    assert.equal(strict.code, 1);
    assert.match(
      strict.err,
      /items\.csv: 2 item\(s\) occurring in the interactions are missing from the catalog/,
    );
    assert.equal(existsSync(strictOut), false, 'no partial output directory');
  });

  test('bad input: clear error, exit code 1, no output directory', async (t) => {
    const bad = join(dir, 'bad.csv');
    await writeFile(bad, 'user_id,item_id,timestamp\na,x,1\na,y,not-a-time\n');
    const out = join(dir, 'bad-out');
    const result = await capture(t, prepare, ['--interactions', bad, '--out', out]);
    assert.equal(result.code, 1);
    assert.match(result.err, /bad\.csv:3: field 'timestamp': unparsable timestamp 'not-a-time'/);
    assert.equal(existsSync(out), false);
    const usage = await capture(t, prepare, ['--interactions', bad, '--out', out, '--quantile', 'high']);
    assert.equal(usage.code, 2);
    assert.match(usage.err, /--quantile expects a number/);
    assert.equal((await capture(t, prepare, ['--help'])).code, 0);
    assert.equal((await capture(t, generate, ['--help'])).code, 0);
  });
});
