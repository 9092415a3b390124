import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { run as embedCommand } from '../src/cli/commands/embed.js';
import { run as evaluateCommand } from '../src/cli/commands/evaluate.js';
import { run as trainCommand } from '../src/cli/commands/train.js';
import { prepareSplit } from '../src/data/split.js';
import { saveSplit } from '../src/data/store.js';
import { generateSynthetic } from '../src/data/synthetic.js';
import { loadLexicalFusion } from '../src/model/fusion.js';
import { capture } from './capture.js';

const dir = mkdtempSync(join(tmpdir(), 'deltarec-commands-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const splitDir = join(dir, 'split');
const itemsPath = join(dir, 'items.csv');
/** `deltarec train` on the split and items with the built-in text encoder: small and one epoch. */
const quickTrainArgs = [
  '--split',
  splitDir,
  '--items',
  itemsPath,
  '--content-dim',
  '24',
  '--d',
  '16',
  '--epochs',
  '1',
];

/** Two epochs of a content model on the title and description text (the model tests that evaluate what they train). */
const textTrainArgs = [
  ...quickTrainArgs.slice(0, 4),
  '--fields',
  'title,description',
  '--content-dim',
  '24',
  '--d',
  '16',
  '--max-length',
  '12',
  '--epochs',
  '2',
];

before(async () => {
  const data = generateSynthetic({ users: 250, items: 120, topics: 5, seed: 9 });
  await saveSplit(splitDir, prepareSplit(data.interactions));
  const lines = ['item_id,title,description'];
  data.catalog.ids.forEach((id, i) =>
    lines.push(`${id},${data.catalog.fields.title[i]},${data.catalog.fields.description[i]}`),
  );
  writeFileSync(itemsPath, lines.join('\n') + '\n');
});

test('deltarec train saves a model that deltarec evaluate loads and scores in every mode', async () => {
  const modelDir = join(dir, 'model');
  const trained = await capture(() =>
    trainCommand([...textTrainArgs, '--model', 'content-delta', '--out', modelDir]),
  );
  assert.equal(trained.code, 0, trained.err);
  assert.ok(existsSync(join(modelDir, 'manifest.json')));
  const manifest = JSON.parse(readFileSync(join(modelDir, 'manifest.json'), 'utf8'));
  assert.equal(manifest.content.encoder.kind, 'tfidf-svd', 'the text encoder is saved for the service');
  assert.equal(manifest.content.projection.kind, 'pca');

  const json = join(dir, 'metrics.json');
  const evaluated = await capture(() =>
    evaluateCommand([
      '--model',
      modelDir,
      '--split',
      splitDir,
      '--mode',
      'all',
      '--ks',
      '5,10',
      '--json',
      json,
    ]),
  );
  assert.equal(evaluated.code, 0, evaluated.err);
  const metrics = JSON.parse(readFileSync(json, 'utf8'));
  assert.equal(metrics.length, 4);
  assert.deepEqual(
    metrics.map((m: { options: { recommendColdItems: boolean; filterColdInputs: boolean } }) => [
      m.options.recommendColdItems,
      m.options.filterColdInputs,
    ]),
    [
      [true, false],
      [true, true],
      [false, false],
      [false, true],
    ],
  );
  for (const m of metrics) assert.ok(m.all['ndcg@10'] >= m.all['ndcg@5']);
  assert.match(evaluated.out, /cold\s+\d+\s+0\.\d{4}/);
});

test('deltarec train --borrow-deltas saves the option; deltarec evaluate --borrow-deltas 0 gives the plain model', async () => {
  const modelDir = join(dir, 'borrowing');
  const trained = await capture(() =>
    trainCommand([...textTrainArgs, '--borrow-deltas', '3', '--out', modelDir]),
  );
  assert.equal(trained.code, 0, trained.err);
  const manifest = JSON.parse(readFileSync(join(modelDir, 'manifest.json'), 'utf8'));
  assert.equal(manifest.model.config.borrowDeltas, 3);
  assert.equal(manifest.model.config.warmItems, manifest.items.num_warm);
  const metrics = async (model: string, extra: string[]) => {
    const json = join(dir, `borrow-${extra.join('')}-${model.length}.json`);
    const r = await capture(() =>
      evaluateCommand(['--model', model, '--split', splitDir, ...extra, '--json', json]),
    );
    assert.equal(r.code, 0, r.err);
    return JSON.parse(readFileSync(json, 'utf8'));
  };
  // Same seed, same training as the plain model of the first test: only the cold deltas differ.
  const plain = await metrics(join(dir, 'model'), []);
  assert.deepEqual(await metrics(modelDir, ['--borrow-deltas', '0']), plain);
  assert.deepEqual(await metrics(join(dir, 'model'), ['--borrow-deltas', '3']), await metrics(modelDir, []));
  const bad = await capture(() =>
    evaluateCommand(['--model', modelDir, '--split', splitDir, '--borrow-deltas', '-1']),
  );
  assert.match(bad.err, /--borrow-deltas must be an integer >= 0/);
});

test('deltarec train reads content written by deltarec embed', async () => {
  const contentDir = join(dir, 'content');
  const embedded = await capture(() =>
    embedCommand([
      '--items',
      itemsPath,
      '--encoder',
      'tfidf-svd',
      '--fields',
      'title,description',
      '--dim',
      '20',
      '--out',
      contentDir,
    ]),
  );
  assert.equal(embedded.code, 0, embedded.err);
  const modelDir = join(dir, 'knn-model');
  const trained = await capture(() =>
    trainCommand([
      '--split',
      splitDir,
      '--content',
      contentDir,
      '--model',
      'knn',
      '--out',
      modelDir,
      '--evaluate',
    ]),
  );
  assert.equal(trained.code, 0, trained.err);
  assert.match(trained.err, /vectors of 20 dims/);
  assert.match(trained.out, /Content KNN/);
  const manifest = JSON.parse(readFileSync(join(modelDir, 'manifest.json'), 'utf8'));
  assert.equal(manifest.model.kind, 'knn');
  assert.equal(manifest.content.encoder.kind, 'tfidf-svd');
});

test('commands fail with clear messages on bad arguments', async () => {
  const noSplit = await capture(() => trainCommand(['--model', 'knn', '--out', join(dir, 'x')]));
  assert.equal(noSplit.code, 1);
  assert.match(noSplit.err, /--split DIR and --out MODELDIR are required/);
  const noItems = await capture(() =>
    trainCommand(['--split', splitDir, '--model', 'knn', '--out', join(dir, 'x')]),
  );
  assert.match(noItems.err, /--content DIR or --items F \(the item catalog\) is required for model 'knn'/);
  const badModel = await capture(() =>
    trainCommand(['--split', splitDir, '--model', 'gru', '--out', join(dir, 'x')]),
  );
  assert.match(badModel.err, /--model must be one of/);
  const badMode = await capture(() =>
    evaluateCommand(['--model', join(dir, 'model'), '--split', splitDir, '--mode', 'odd']),
  );
  assert.match(badMode.err, /--mode must be/);
  const help = await capture(() => evaluateCommand(['--help']));
  assert.equal(help.code, 0);
  assert.match(help.out, /usage: deltarec evaluate/);
});

test('deltarec train --lexical-weight saves a fused model that deltarec evaluate scores; misuse is named', async () => {
  const modelDir = join(dir, 'fused');
  const trained = await capture(() =>
    trainCommand([...quickTrainArgs, '--lexical-weight', '4', '--out', modelDir]),
  );
  assert.equal(trained.code, 0, trained.err);
  const manifest = JSON.parse(readFileSync(join(modelDir, 'manifest.json'), 'utf8'));
  assert.equal(manifest.content.lexical.kind, 'lexical-fusion');
  const evaluated = await capture(() => evaluateCommand(['--model', modelDir, '--split', splitDir]));
  assert.equal(evaluated.code, 0, evaluated.err);
  assert.match(evaluated.out, /all\s+\d+\s+0\.\d{4}/);
  const sasrec = await capture(() =>
    trainCommand([...quickTrainArgs, '--model', 'sasrec', '--lexical-weight', '4', '--out', join(dir, 'no')]),
  );
  assert.equal(sasrec.code, 1);
  assert.match(sasrec.err, /--lexical-weight needs --items .* and a content model/);
  const negative = await capture(() =>
    trainCommand([...quickTrainArgs, '--lexical-weight=-1', '--out', join(dir, 'no')]),
  );
  assert.equal(negative.code, 1);
  assert.match(negative.err, /lexical-weight/);
});

test('deltarec train --lexical-cold-weight --lexical-last-weight: saved with the model; misuse is named', async () => {
  const modelDir = join(dir, 'cold-aware');
  const args = ['--lexical-weight', '2', '--lexical-cold-weight', '3', '--lexical-last-weight', '1.5'];
  const trained = await capture(() =>
    trainCommand([...quickTrainArgs, ...args, '--out', modelDir, '--evaluate']),
  );
  assert.equal(trained.code, 0, trained.err);
  assert.match(trained.out, /lexical 2, cold 3, last 1\.5/);
  const manifest = JSON.parse(readFileSync(join(modelDir, 'manifest.json'), 'utf8'));
  const state = await loadLexicalFusion(join(modelDir, 'lexical'));
  assert.deepEqual([state.weight, state.coldWeight, state.lastWeight], [2, 3, 1.5]);
  assert.equal(state.numWarm, manifest.items.num_warm);
  const auto = await capture(() =>
    trainCommand([
      ...quickTrainArgs,
      '--lexical-weight',
      'auto',
      '--lexical-cold-weight',
      '1',
      '--out',
      join(dir, 'no'),
    ]),
  );
  assert.equal(auto.code, 1);
  assert.match(auto.err, /--lexical-cold-weight and --lexical-last-weight need a numeric --lexical-weight/);
});

test('deltarec train --fields NAME:WEIGHT --analyzer word+char: the saved encoder keeps both; bad specs are named', async () => {
  const modelDir = join(dir, 'text-signal');
  const trained = await capture(() =>
    trainCommand([
      ...quickTrainArgs,
      '--fields',
      'title:2,description',
      '--analyzer',
      'word+char',
      '--out',
      modelDir,
    ]),
  );
  assert.equal(trained.code, 0, trained.err);
  assert.match(trained.err, /tfidf-svd on title\+description \(weights 2, 1\), word\+char 3-5, 24 dims/);
  const state = JSON.parse(readFileSync(join(modelDir, 'encoder', 'tfidf-svd.json'), 'utf8'));
  assert.deepEqual(state.fields, ['title', 'description']);
  assert.deepEqual(state.options.fieldWeights, [2, 1]);
  assert.equal(state.options.analyzer, 'word+char');
  assert.ok(
    state.terms.some((t: string) => t.startsWith('#')) && state.terms.some((t: string) => /^\w+$/.test(t)),
  );
  const evaluated = await capture(() => evaluateCommand(['--model', modelDir, '--split', splitDir]));
  assert.equal(evaluated.code, 0, evaluated.err);
  // Character n-gram vectors with word rows for the fusion: the saved sparse rows are over the word vocabulary.
  const pairDir = join(dir, 'text-signal-pair');
  const pair = await capture(() =>
    trainCommand([
      ...quickTrainArgs,
      '--analyzer',
      'char',
      '--lexical-analyzer',
      'word',
      '--lexical-weight',
      '4',
      '--out',
      pairDir,
    ]),
  );
  assert.equal(pair.code, 0, pair.err);
  const pairState = JSON.parse(readFileSync(join(pairDir, 'encoder', 'tfidf-svd.json'), 'utf8'));
  assert.ok(pairState.terms.every((t: string) => t.startsWith('#')));
  assert.ok(pairState.lexical.terms.every((t: string) => !t.startsWith('#')));
  const rows = await loadLexicalFusion(join(pairDir, 'lexical'));
  assert.equal(rows.rows.cols, pairState.lexical.terms.length);
  const badWeight = await capture(() =>
    trainCommand([...quickTrainArgs, '--fields', 'title,description:lots', '--out', join(dir, 'no')]),
  );
  assert.equal(badWeight.code, 1);
  assert.match(badWeight.err, /field 'description' has weight 'lots'/);
  const badAnalyzer = await capture(() =>
    trainCommand([...quickTrainArgs, '--analyzer', 'letters', '--out', join(dir, 'no')]),
  );
  assert.match(badAnalyzer.err, /--analyzer must be one of word, char, word\+char/);
  assert.equal(existsSync(join(dir, 'no')), false);
});
