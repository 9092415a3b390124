import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { run } from '../src/cli/commands/recommend.js';
import { createService } from '../src/serve/server.js';
import { capture } from './capture.js';
import { untrainedFixtureInTemp, type Fixture } from './serve-fixture.js';

let root: string;
let modelDir: string;
let fixture: Fixture;

before(async () => ({ root, modelDir, fixture } = await untrainedFixtureInTemp('deltarec-recommend-')));

after(async () => {
  await rm(root, { recursive: true, force: true });
});

/** Runs the command with console.error captured. */
const recommend = (args: string[]) => capture(() => run(args));

test('deltarec recommend scores every line like the service, including items added to its catalog', async () => {
  const ids = fixture.split.itemIds;
  // Add an item through the service so that the batch command must apply the catalog log too.
  const service = await createService({ modelDir, workers: 0 });
  const added = await service.app.inject({
    method: 'POST',
    url: '/items',
    payload: { id: 'added-1', text: fixture.fields.title[5] },
  });
  assert.equal(added.statusCode, 201);
  const lines = [
    JSON.stringify([ids[1], ids[2], ids[3]]),
    '',
    JSON.stringify({ user: 'u7', items: [ids[4], 'added-1'], k: 3, exclude: [ids[9]] }),
    JSON.stringify({ user: 'u8', items: [ids[5]], include_cold: false, exclude_seen: false }),
  ];
  const expected = [];
  for (const line of [lines[0], lines[2], lines[3]]) {
    const parsed = JSON.parse(line);
    const body = Array.isArray(parsed) ? { items: parsed } : { ...parsed };
    delete body.user;
    const response = await service.app.inject({ method: 'POST', url: '/recommend', payload: body });
    assert.equal(response.statusCode, 200, response.body);
    expected.push(response.json().items);
  }
  await service.close();

  const input = join(root, 'sequences.jsonl');
  const out = join(root, 'recs.jsonl');
  await writeFile(input, lines.join('\n') + '\n');
  const { code, err: stderr } = await recommend([
    '--model',
    modelDir,
    '--input',
    input,
    '--k',
    '10',
    '--out',
    out,
  ]);
  assert.equal(code, 0, stderr);
  assert.match(stderr, /applied 1 catalog changes/);
  const results = (await readFile(out, 'utf8'))
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  assert.equal(results.length, 3);
  assert.deepEqual(results[0], { items: expected[0] });
  assert.equal(results[0].items.length, 10);
  assert.deepEqual(results[1], { user: 'u7', items: expected[1] });
  assert.equal(results[1].items.length, 3);
  assert.deepEqual(results[2], { user: 'u8', items: expected[2] });
});

test('deltarec recommend names the line of bad input and leaves no output file', async () => {
  const ids = fixture.split.itemIds;
  const input = join(root, 'bad.jsonl');
  const out = join(root, 'bad-out.jsonl');
  const cases: [string, RegExp][] = [
    ['{"items": [', /bad\.jsonl:2: not valid JSON/],
    ['{"items": "x"}', /bad\.jsonl:2: field 'items' must be a non-empty list/],
    ['{"items": ["no-such-item"]}', /bad\.jsonl:2: field 'items': unknown item id "no-such-item"/],
    [`{"items": ["${ids[1]}"], "k": 0}`, /bad\.jsonl:2: field 'k' must be a positive integer/],
    [
      `{"items": ["${ids[1]}"], "include_cold": 1}`,
      /bad\.jsonl:2: field 'include_cold' must be true or false/,
    ],
    [
      `{"items": ["${ids[1]}"], "include-cold": false}`,
      /^deltarec recommend: .*bad\.jsonl:2: unknown field 'include-cold' \(expected items, k, exclude, include_cold, exclude_seen; user or id are copied to the output\)$/m,
    ],
  ];
  for (const [line, message] of cases) {
    await writeFile(input, `["${ids[1]}"]\n${line}\n`);
    const { code, err: stderr } = await recommend(['--model', modelDir, '--input', input, '--out', out]);
    assert.equal(code, 1);
    assert.match(stderr, message);
    assert.ok(!existsSync(out));
  }
  // --skip-unknown drops unknown ids instead; a line left empty gets no items.
  await writeFile(input, `["no-such-item", "${ids[1]}"]\n["no-such-item"]\n`);
  const { code } = await recommend(['--model', modelDir, '--input', input, '--out', out, '--skip-unknown']);
  assert.equal(code, 0);
  const results = (await readFile(out, 'utf8'))
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  assert.equal(results[0].items.length, 10);
  assert.deepEqual(results[1], { items: [] });
  const missing = await recommend([
    '--model',
    modelDir,
    '--input',
    join(root, 'absent.jsonl'),
    '--out',
    out + '2',
  ]);
  assert.equal(missing.code, 1);
  assert.match(missing.err, /cannot read .*absent\.jsonl/);
  // Option ranges are checked before any input is read; negative numbers get our message.
  const negative = await recommend([
    '--model',
    join(root, 'absent'),
    '--input',
    input,
    '--out',
    out,
    '--k',
    '-1',
  ]);
  assert.equal(negative.code, 2);
  assert.equal(negative.err.trim(), "deltarec recommend: --k must be a positive integer (got '-1')");
});

test('deltarec recommend --out replaces an existing file only with --force, and leaves no temporary file', async () => {
  const ids = fixture.split.itemIds;
  const dir = join(root, 'force');
  await mkdir(dir);
  const input = join(dir, 'in.jsonl');
  const out = join(dir, 'out.jsonl');
  await writeFile(input, `["${ids[1]}"]\n`);
  await writeFile(out, 'earlier results\n');
  const refused = await recommend(['--model', modelDir, '--input', input, '--out', out]);
  assert.equal(refused.code, 1);
  assert.equal(
    refused.err.trim(),
    `deltarec recommend: --out ${out}: refusing to replace an existing file; choose a new name, or use --force to replace it`,
  );
  assert.equal(await readFile(out, 'utf8'), 'earlier results\n');
  const forced = await recommend(['--model', modelDir, '--input', input, '--out', out, '--force']);
  assert.equal(forced.code, 0, forced.err);
  assert.equal(JSON.parse(await readFile(out, 'utf8')).items.length, 10);
  assert.deepEqual(await readdir(dir), ['in.jsonl', 'out.jsonl']);
});
