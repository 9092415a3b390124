/**
 * Commands that never destroy data and parse sanely (issue 13): `train --out` refuses directories it would lose
 * data in, options are checked before any input is read, negative numbers reach our range messages, `prepare`
 * reports what its filters drop, and the warm start and `--lexical-weight auto` work end to end from the CLI.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { run as prepareCommand } from '../src/cli/commands/prepare.js';
import { run as recommendCommand } from '../src/cli/commands/recommend.js';
import { run as trainCommand } from '../src/cli/commands/train.js';
import { withNegativeNumbers } from '../src/cli/options.js';
import { generateSynthetic } from '../src/data/synthetic.js';
import { writeCatalogCsv, writeInteractionsCsv } from '../src/data/writers.js';
import { capture } from './capture.js';

const dir = mkdtempSync(join(tmpdir(), 'deltarec-cli-safety-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const interactions = join(dir, 'interactions.csv');
const items = join(dir, 'items.csv');
const split = join(dir, 'split');
const innerSplit = join(dir, 'inner-split');
const missing = join(dir, 'no-such-dir');
const small = ['--d', '16', '--max-length', '16', '--epochs', '1', '--content-dim', '16'];

before(async () => {
  const data = generateSynthetic({ users: 400, items: 150, topics: 6, seed: 9 });
  await writeInteractionsCsv(interactions, data.interactions);
  await writeCatalogCsv(items, data.catalog);
  for (const [out, extra] of [
    [split, []],
    [innerSplit, ['--backtest']],
  ] as const) {
    const r = await capture(() =>
      prepareCommand(['--interactions', interactions, '--items', items, '--out', out, ...extra]),
    );
    assert.equal(r.code, 0, r.err);
  }
});

test('withNegativeNumbers joins a negative number to the option before it, nothing else', () => {
  assert.deepEqual(
    withNegativeNumbers(['--lr', '-1', '--d', '-0.5', '--x', '-.5', '--k=-2', '-h', '--a', '-b']),
    ['--lr=-1', '--d=-0.5', '--x=-.5', '--k=-2', '-h', '--a', '-b'],
  );
});

test('train checks options before reading input; negative numbers get our message', async () => {
  const cases: [string[], string][] = [
    [['--lr', '-1'], "--lr must be a number > 0 (got '-1')"],
    [['--lr', '0'], "--lr must be a number > 0 (got '0')"],
    [['--epochs', '0'], "--epochs must be an integer >= 1 (got '0')"],
    [['--dropout', '1'], "--dropout must be a number in [0, 1) (got '1')"],
    [['--d', '30', '--heads', '4'], '--d 30 is not divisible by --heads 4'],
    [['--delta-max', '-2'], "--delta-max must be a number > 0 (got '-2')"],
    [['--content-dim', '-3'], "--content-dim must be an integer >= 1 (got '-3')"],
    [['--lexical-weight', '-1', '--items', items], "--lexical-weight must be a number >= 0 (got '-1')"],
    [['--lexical-grid', '1,2'], '--lexical-grid applies to --lexical-weight auto and --model auto'],
    [
      ['--model', 'auto', '--items', items, '--lexical-weight', '2', '--lexical-grid', '1,2'],
      '--lexical-grid applies to --lexical-weight auto and --model auto',
    ],
    [
      ['--model', 'best'],
      "--model must be one of knn, sasrec, content-init, content-delta, content-frozen, content-map, auto (got 'best')",
    ],
    [['--auto-models', 'content-init'], '--auto-models applies to --model auto'],
    [['--model', 'auto', '--items', items, '--auto-models', ''], '--auto-models needs at least one model'],
    [
      ['--model', 'auto', '--content', 'c'],
      '--model auto needs --items (the backtest encodes the catalog again for its own split), not --content or --init-from',
    ],
    [['--refit-projection'], '--refit-projection applies to a warm start (--init-from DIR)'],
    [['--init-items', 'fresh'], '--init-items applies to a warm start (--init-from DIR)'],
    [['--init-from', missing, '--init-items', 'new'], "--init-items must be old or fresh (got 'new')"],
    [['--shrink', '0.5'], '--shrink applies to a warm start (--init-from DIR)'],
    [['--perturb', '0.1'], '--perturb applies to a warm start (--init-from DIR)'],
    [['--init-from', missing, '--shrink', '1.5'], "--shrink must be a number in [0, 1] (got '1.5')"],
    [['--init-from', missing, '--perturb', '-0.1'], "--perturb must be a number >= 0 (got '-0.1')"],
    [['--warmup-steps', '2.5'], "--warmup-steps must be an integer >= 0 (got '2.5')"],
    [['--train-changed', 'old-split'], '--train-changed applies to a warm start (--init-from DIR)'],
    [['--lr-schedule', 'linear'], "--lr-schedule must be constant or cosine (got 'linear')"],
    [['--dense-lr-scale', '-0.5'], "--dense-lr-scale must be a number >= 0 (got '-0.5')"],
    [['--ema', '1'], "--ema must be a decay in [0, 1) (got '1')"],
    [['--replay', '0.2'], '--replay applies to --train-changed DIR'],
    [
      ['--init-from', missing, '--train-changed', 'old', '--replay', '2'],
      "--replay must be a number in [0, 1] (got '2')",
    ],
  ];
  for (const [args, message] of cases) {
    // The split does not exist: only an option check can produce these messages.
    const r = await capture(() => trainCommand(['--split', missing, '--out', join(dir, 'never'), ...args]));
    assert.equal(r.code, 1, args.join(' '));
    assert.equal(r.err, `deltarec train: ${message}`);
  }
  assert.ok(!existsSync(join(dir, 'never')));
});

test('train --out refuses a split, other files and a served model directory unless --force', async () => {
  const base = ['--split', split, '--items', items, ...small];
  const refuse = async (out: string, message: string) => {
    const r = await capture(() => trainCommand([...base, '--out', out]));
    assert.equal(r.code, 1);
    assert.equal(r.err, `deltarec train: ${message}`);
  };
  await refuse(
    split,
    `--out ${split}: refusing to replace a directory that is not a deltarec model (it holds a prepared split); ` +
      `choose a new directory, or use --force to replace it`,
  );
  assert.ok(existsSync(join(split, 'stats.json')), 'the split is untouched');
  const content = join(dir, 'content');
  mkdirSync(content);
  writeFileSync(join(content, 'content.json'), '{"format": "deltarec-content"}');
  await refuse(
    content,
    `--out ${content}: refusing to replace a directory that is not a deltarec model (it holds content vectors); ` +
      `choose a new directory, or use --force to replace it`,
  );
  const notes = join(dir, 'notes');
  mkdirSync(notes);
  writeFileSync(join(notes, 'todo.txt'), 'keep me');
  await refuse(
    notes,
    `--out ${notes}: refusing to replace a directory that is not a deltarec model (it holds todo.txt); ` +
      `choose a new directory, or use --force to replace it`,
  );
  await refuse(items, `--out ${items}: refusing to replace a file that is not a model directory`);

  const model = join(dir, 'model');
  const first = await capture(() => trainCommand([...base, '--out', model]));
  assert.equal(first.code, 0, first.err);
  const again = await capture(() => trainCommand([...base, '--out', model]));
  assert.equal(again.code, 0, 'a model directory is replaced by a new model');
  writeFileSync(join(model, 'catalog.log'), 'items added through the service');
  await refuse(
    model,
    `--out ${model}: refusing to replace a model directory that also holds catalog.log (the catalog of a service ` +
      `serving this model: items added through it would be lost); stop the service and move those files, choose a ` +
      `new directory, or use --force to replace it`,
  );
  assert.equal(readFileSync(join(model, 'catalog.log'), 'utf8'), 'items added through the service');
  const forced = await capture(() => trainCommand([...base, '--out', notes, '--force']));
  assert.equal(forced.code, 0, forced.err);
  assert.ok(existsSync(join(notes, 'manifest.json')) && !existsSync(join(notes, 'todo.txt')));
});

test('prepare checks ranges before reading, and reports rating-filter drops and catalog items without interactions', async () => {
  const usage = async (args: string[], message: string) => {
    const r = await capture(() => prepareCommand(['--interactions', missing, '--out', missing, ...args]));
    assert.equal(r.code, 2);
    assert.equal(r.err.split('\n')[0], `deltarec prepare: ${message}`);
  };
  await usage(['--quantile', '2'], "--quantile must be >= 0 and <= 1, got '2'");
  await usage(['--val-share', '1'], "--val-share must be >= 0 and < 1, got '1'");
  await usage(['--n-core', '-1'], "--n-core must be >= 0, got '-1'");
  await usage(['--same-validation-users'], '--same-validation-users applies to --backtest');

  const rated = join(dir, 'rated.csv');
  const rows = ['user_id,item_id,timestamp,rating'];
  for (let u = 0; u < 30; u++)
    for (let t = 0; t < 6; t++) rows.push(`u${u},i${(u + t) % 12},${1000 + u * 10 + t},${t === 5 ? 2 : 5}`);
  writeFileSync(rated, rows.join('\n') + '\n');
  const catalog = join(dir, 'rated-items.csv');
  writeFileSync(
    catalog,
    ['item_id,title', ...Array.from({ length: 14 }, (_, i) => `i${i},item ${i}`)].join('\n') + '\n',
  );
  const r = await capture(() =>
    prepareCommand([
      '--interactions',
      rated,
      '--items',
      catalog,
      '--n-core',
      '0',
      '--out',
      join(dir, 'rated'),
    ]),
  );
  assert.equal(r.code, 0, r.err);
  const lines = r.err.split('\n');
  assert.ok(lines.includes('the rating filter (--min-rating 4) dropped 30 of 180 interactions'), r.err);
  assert.ok(
    lines.includes(
      'note: 2 of 14 catalog items have no interactions in the split (they are not part of it; `deltarec serve` can add them as new items)',
    ),
    r.err,
  );
});

test('train --init-from warm-starts from the backtest period; --lexical-weight auto chooses and stores a weight', async () => {
  const old = join(dir, 'old');
  const base = ['--items', items, '--fields', 'title,description', ...small];
  const first = await capture(() => trainCommand(['--split', innerSplit, ...base, '--out', old]));
  assert.equal(first.code, 0, first.err);
  const warm = await capture(() =>
    trainCommand(['--split', split, ...base, '--init-from', old, '--out', join(dir, 'warm')]),
  );
  assert.equal(warm.code, 0, warm.err);
  assert.match(
    warm.err,
    /^warm start from .*old: dense weights carried; every item starts from its content \(--init-items fresh; deltas at zero\); the optimizer started fresh$/m,
  );
  const oldRows = await capture(() =>
    trainCommand([
      '--split',
      split,
      ...base,
      '--init-from',
      old,
      '--init-items',
      'old',
      '--shrink',
      '0.6',
      '--perturb',
      '0.4',
      '--warmup-steps',
      '3',
      '--lr-schedule',
      'cosine',
      '--dense-lr-scale',
      '0.5',
      '--ema',
      '0.9',
      '--train-changed',
      innerSplit,
      '--out',
      join(dir, 'warm-old'),
    ]),
  );
  assert.equal(oldRows.code, 0, oldRows.err);
  assert.match(
    oldRows.err,
    /^warm start from .*old: \d+ items keep their trained rows; \d+ formerly cold and \d+ new warm items start from content; the optimizer started fresh$/m,
  );
  assert.match(
    oldRows.err,
    /^training on the sequences changed since .*: (\d+) of \d+ \(\d+ changed, \d+ new users; [1-9]\d* unchanged left out\)$/m,
  );
  assert.match(oldRows.err, /^shrink and perturb: carried values = 0.6 x old \+ 0.4 x new initialization$/m);
  assert.match(warm.err, /content: tfidf-svd on title\+description, 16 dims, the given encoder/);
  const wrongKind = await capture(() =>
    trainCommand([
      '--split',
      split,
      ...base,
      '--model',
      'content-init',
      '--init-from',
      old,
      '--out',
      join(dir, 'x'),
    ]),
  );
  assert.equal(
    wrongKind.err,
    `deltarec train: --init-from ${old} is a 'content-delta' model; a warm start needs the same kind as --model 'content-init'`,
  );

  const auto = join(dir, 'auto');
  const chosen = await capture(() =>
    trainCommand([
      '--split',
      split,
      ...base,
      '--lexical-weight',
      'auto',
      '--lexical-grid',
      '0,2,8',
      '--out',
      auto,
      '--evaluate',
    ]),
  );
  assert.equal(chosen.code, 0, chosen.err);
  const manifest = JSON.parse(readFileSync(join(auto, 'manifest.json'), 'utf8'));
  const choice = manifest.lexical_choice;
  assert.deepEqual(
    choice.table.map((r: { weight: number }) => r.weight),
    [0, 2, 8],
  );
  assert.match(
    chosen.err,
    new RegExp(
      `chosen on the backtest \\(.*\\): content-delta, lexical weight ${choice.weight}\\n  model +weight  all NDCG@10`,
    ),
  );
  assert.match(
    chosen.err,
    new RegExp(`\\n  content-delta +${choice.weight} +0\\.\\d{4} +0\\.\\d{4} +0\\.\\d{4}  <- chosen`),
  );
  if (choice.weight > 0) assert.match(chosen.out, new RegExp(`content-delta \\+ lexical ${choice.weight}`));

  const autoModel = join(dir, 'auto-model');
  const variant = await capture(() =>
    trainCommand([
      '--split',
      split,
      ...base,
      '--model',
      'auto',
      '--auto-models',
      'content-init,content-delta',
      '--lexical-grid',
      '0,8',
      '--out',
      autoModel,
    ]),
  );
  assert.equal(variant.code, 0, variant.err);
  const autoManifest = JSON.parse(readFileSync(join(autoModel, 'manifest.json'), 'utf8'));
  const autoChoice = autoManifest.lexical_choice;
  assert.deepEqual(
    autoChoice.table.map((r: { model: string; weight: number }) => `${r.model}:${r.weight}`),
    ['content-init:0', 'content-init:8', 'content-delta:0', 'content-delta:8'],
  );
  assert.equal(autoManifest.model.config.strategy, autoChoice.model, 'the chosen variant is saved');
  assert.match(
    variant.err,
    new RegExp(
      `chosen on the backtest \\(.*\\): ${autoChoice.model}, lexical weight ${autoChoice.weight}\\n`,
    ),
  );

  const noSource = join(dir, 'copied-split');
  const copy = await capture(() => prepareCommand(['--interactions', interactions, '--out', noSource]));
  assert.equal(copy.code, 0);
  const manifestPath = join(noSource, 'manifest.json');
  const splitManifest = JSON.parse(readFileSync(manifestPath, 'utf8'));
  delete splitManifest.meta.interactions;
  writeFileSync(manifestPath, JSON.stringify(splitManifest));
  const refused = await capture(() =>
    trainCommand(['--split', noSource, ...base, '--lexical-weight', 'auto', '--out', join(dir, 'y')]),
  );
  assert.equal(
    refused.err.split('\n').at(-1),
    `deltarec train: --lexical-weight auto and --model auto need the interactions the split was prepared from; ${noSource}/manifest.json does not name them (prepare the split with deltarec prepare)`,
  );
});

test('recommend --out refuses an existing file (unless --force) and a directory, before reading anything', async () => {
  const existing = join(dir, 'recs.jsonl');
  writeFileSync(existing, 'earlier results\n');
  // The model and input do not exist: the refusal comes first.
  const refused = await capture(() =>
    recommendCommand(['--model', missing, '--input', missing, '--out', existing]),
  );
  assert.equal(refused.code, 1);
  assert.equal(
    refused.err,
    `deltarec recommend: --out ${existing}: refusing to replace an existing file; choose a new name, or use --force to replace it`,
  );
  assert.equal(readFileSync(existing, 'utf8'), 'earlier results\n');
  for (const extra of [[], ['--force']]) {
    const r = await capture(() =>
      recommendCommand(['--model', missing, '--input', missing, '--out', split, ...extra]),
    );
    assert.equal(r.code, 1);
    assert.equal(
      r.err,
      `deltarec recommend: --out ${split}: refusing to write over a directory; name a file`,
    );
  }
});
