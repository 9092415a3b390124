/**
 * ONNX export (src/model/onnx-export.ts, `deltarec export`): the exported graph, run by onnxruntime-node, scores
 * like the library (within 1e-4) and gives the same top-10 lists on 1,000 histories for every SASRec strategy, fed
 * the way docs/onnx.md tells a Python user to feed it. onnxruntime-node is optional: imported only here, dynamically.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { fit, recommend, save, withLexicalFusion, type FitOptions, type FittedModel } from '../src/api.js';
import { run } from '../src/cli/commands/export.js';
import { prepareSplit } from '../src/data/split.js';
import { generateSynthetic } from '../src/data/synthetic.js';
import { buildContent } from '../src/eval/data.js';
import type { OnnxSidecar } from '../src/model/onnx-export.js';
import { varint } from '../src/model/onnx-proto.js';
import type { SASRec } from '../src/model/sasrec.js';
import { createService } from '../src/serve/server.js';
import { FileExistsError, writeFilesAtomically } from '../src/util/files.js';
import { Random } from '../src/util/random.js';
import { capture } from './capture.js';
import { buildFixtureModel } from './serve-fixture.js';

/** The part of onnxruntime-node used here (typed locally: the package is optional and may be absent). */
interface OrtSession {
  inputNames: readonly string[];
  outputNames: readonly string[];
  run(feeds: Record<string, unknown>): Promise<Record<string, { data: unknown }>>;
}
interface Ort {
  InferenceSession: { create(path: string): Promise<OrtSession> };
  Tensor: new (type: 'int64', data: BigInt64Array, dims: number[]) => unknown;
}
const ORT_MODULE = 'onnxruntime-node';
let ort: Ort | null = null;
try {
  ort = (await import(ORT_MODULE)) as Ort;
} catch {
  console.error('model-onnx-export: onnxruntime-node is not installed; the ONNX runtime checks are skipped');
}
const skip = ort ? false : 'onnxruntime-node is not installed';

const data = generateSynthetic({ users: 300, items: 150, topics: 6, seed: 11 });
const split = prepareSplit(data.interactions);
const built = buildContent(split, { catalog: data.catalog }, { fields: ['title', 'description'], dim: 32 });
const small = { d: 16, maxLength: 12, epochs: 2, patience: 2, handleSigint: false, onProgress: () => {} };

let root: string;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'deltarec-onnx-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

/** Runs the command with console.error captured. */
const exportCli = (args: string[]) => capture(() => run(args));

/**
 * 1,000 histories of item ids: short (1-3), up to maxLength, longer than maxLength, test users' histories, some
 * with ids the model does not know, and a few with no known id at all.
 */
function histories(maxLength: number): string[][] {
  const rng = new Random(5);
  const ids = split.itemIds;
  const pick = () => ids[1 + rng.nextInt(split.numItems)];
  const out: string[][] = [];
  for (let h = 0; h < 1000; h++) {
    const kind = h % 5;
    const length =
      kind === 0
        ? 1 + rng.nextInt(3)
        : kind === 1
          ? 4 + rng.nextInt(maxLength - 3)
          : maxLength + 1 + rng.nextInt(3 * maxLength);
    if (kind === 3) {
      // A test user's whole history, as the service would receive it.
      const { offsets, items } = split.test.inputs;
      const u = h % (offsets.length - 1);
      out.push(Array.from(items.subarray(offsets[u], offsets[u + 1]), (i) => ids[i]));
    } else if (h % 97 === 4) out.push(['no-such-item', 'nor-this']);
    else {
      const seq = Array.from({ length }, pick);
      if (kind === 4) seq.splice(rng.nextInt(seq.length), 0, 'unknown-id');
      out.push(seq);
    }
  }
  return out;
}

/** The feeding recipe of docs/onnx.md: ids to indices (unknown -> 0), most recent last, left-padded with 0. */
function feed(sidecar: OnnxSidecar, batch: string[][], rightPad = false): BigInt64Array[] {
  const index = new Map(sidecar.item_ids.map((id, i) => [id, i]));
  const width = Math.max(1, ...batch.map((s) => s.length));
  return batch.map((s) => {
    const row = new BigInt64Array(width);
    const offset = rightPad ? 0 : width - s.length;
    s.forEach((id, i) => (row[offset + i] = BigInt(index.get(id) ?? 0)));
    return row;
  });
}

async function runGraph(
  session: OrtSession,
  rows: BigInt64Array[],
): Promise<{ scores: Float32Array; user: Float32Array }> {
  const width = rows[0].length;
  const flat = new BigInt64Array(rows.length * width);
  rows.forEach((r, b) => flat.set(r, b * width));
  const result = await session.run({ item_ids: new ort!.Tensor('int64', flat, [rows.length, width]) });
  return { scores: result.scores.data as Float32Array, user: result.user_vector.data as Float32Array };
}

/** docs/onnx.md's top-k: drop the history's own items, highest scores first, ties to the lower index. */
function topK(scores: Float32Array, row: number, width: number, seen: BigInt64Array, k: number): number[] {
  const s = Array.from(scores.subarray(row * width, (row + 1) * width));
  for (const i of seen) s[Number(i)] = -Infinity;
  return s
    .map((v, i) => [v, i])
    .filter(([v]) => v > -Infinity)
    .sort((a, b) => b[0] - a[0] || a[1] - b[1])
    .slice(0, k)
    .map(([, i]) => i);
}

/** Models exported by checkExport and their .onnx files, for the Python test. */
const exported = new Map<string, { model: FittedModel; file: string }>();

/** Exports a model through the CLI and checks the graph against the library on 1,000 histories. */
async function checkExport(name: string, model: FittedModel): Promise<OnnxSidecar> {
  const modelDir = join(root, name);
  exported.set(name, { model, file: join(root, `${name}.onnx`) });
  await save(model, modelDir);
  const out = join(root, `${name}.onnx`);
  const { code, err: stderr } = await exportCli(['--model', modelDir, '--format', 'onnx', '--out', out]);
  assert.equal(code, 0, stderr);
  const sidecar = JSON.parse(readFileSync(`${out}.json`, 'utf8')) as OnnxSidecar;
  assert.deepEqual(sidecar.item_ids, model.itemIds);
  assert.equal(sidecar.model.max_length, model.maxLength);
  assert.equal(sidecar.model.num_warm, model.numWarm);
  const session = await ort!.InferenceSession.create(out);
  assert.deepEqual([...session.inputNames], ['item_ids']);
  assert.deepEqual([...session.outputNames], ['user_vector', 'scores']);

  // The library's model without lexical fusion (which is not exported).
  const plain = withLexicalFusion(model, built.lexical!, 0);
  const sasrec = plain.recommender as SASRec;
  const width = sasrec.numItems + 1;
  const d = sasrec.config.d;
  const all = histories(model.maxLength);
  const expected = recommend(plain, all, { k: 10 });
  let maxDiff = 0;
  let lists = 0;
  let empty = 0;
  const batch = 200;
  for (let start = 0; start < all.length; start += batch) {
    const part = all.slice(start, start + batch);
    const rows = feed(sidecar, part);
    const { scores, user } = await runGraph(session, rows);
    // The library's scores: indices of known ids, last maxLength of them (api.recommend's truncation).
    const inputs = rows.map((r) =>
      Int32Array.from(Array.from(r, Number).filter((i) => i > 0)).slice(-model.maxLength),
    );
    const libScores = new Float32Array(part.length * width);
    sasrec.score(inputs, libScores);
    const libUser = new Float32Array(part.length * d);
    sasrec.encode(inputs, libUser);
    for (let i = 0; i < libScores.length; i++) {
      if (i % width === 0) assert.equal(scores[i], -Infinity, 'column 0 (padding) is -inf');
      else maxDiff = Math.max(maxDiff, Math.abs(scores[i] - libScores[i]));
    }
    for (let i = 0; i < libUser.length; i++) maxDiff = Math.max(maxDiff, Math.abs(user[i] - libUser[i]));
    part.forEach((_, r) => {
      const want = expected[start + r].items;
      if (inputs[r].length === 0) {
        assert.deepEqual(want, [], 'the library recommends nothing for a history without known items');
        empty++;
        return;
      }
      const got = topK(scores, r, width, rows[r], 10).map((i) => sidecar.item_ids[i]);
      assert.deepEqual(got, want, `${name}: top-10 of history ${start + r}`);
      lists++;
    });
    if (start === 0) {
      // Right padding, and a batch padded much longer than maxLength, give the same scores.
      const right = await runGraph(session, feed(sidecar, part, true));
      const wide = feed(sidecar, [...part, Array(5 * model.maxLength).fill('unknown-id')]);
      const padded = await runGraph(session, wide);
      for (let i = 0; i < scores.length; i++) {
        if (i % width === 0) continue;
        maxDiff = Math.max(maxDiff, Math.abs(right.scores[i] - scores[i]));
        maxDiff = Math.max(maxDiff, Math.abs(padded.scores[i] - scores[i]));
      }
    }
  }
  console.error(
    `${name}: ${all.length} histories, max |onnx - library| = ${maxDiff.toExponential(2)} over scores and user vectors, ` +
      `${lists} top-10 lists identical, ${empty} without known items`,
  );
  assert.ok(maxDiff <= 1e-4, `${name}: max difference ${maxDiff}`);
  assert.equal(lists + empty, all.length);
  assert.ok(empty > 0 && empty < 20);
  return sidecar;
}

const cases: [string, FitOptions][] = [
  ['content-delta', { ...small, model: 'content-delta', content: built.content! }],
  [
    'content-init',
    { ...small, model: 'content-init', content: built.content!, heads: 2, activation: 'gelu' },
  ],
  ['id', { ...small, model: 'sasrec', blocks: 1 }],
  ['content-map', { ...small, model: 'content-map', content: built.content!, heads: 4 }],
  ['content-frozen', { ...small, model: 'content-frozen', content: built.content!, blocks: 3 }],
];

for (const [name, options] of cases) {
  test(`onnx export: a ${name} model scores like the library on 1,000 histories`, { skip }, async () => {
    const model = await fit(split, options);
    const sidecar = await checkExport(name, model);
    assert.equal(sidecar.model.strategy, name);
    assert.equal(sidecar.lexical_fusion, null);
  });
}

test('a lexically fused model exports its SASRec part and the sidecar says so', { skip }, async () => {
  const base = await fit(split, { ...small, model: 'content-delta', content: built.content!, seed: 2 });
  const fused = withLexicalFusion(base, built.lexical!, 2);
  const sidecar = await checkExport('fused', fused);
  assert.equal(sidecar.lexical_fusion?.weight, 2);
  assert.equal(sidecar.lexical_fusion?.exported, false);
});

const hasNumpy = spawnSync('python3', ['-c', 'import numpy']).status === 0;
const skipPython = skip || (hasNumpy ? false : 'python3 with numpy is not available');

/** A stand-in for Python's onnxruntime (not installable here) that runs the graph with onnxruntime-node. */
const ORT_STAND_IN = `
import json, os, subprocess, tempfile
import numpy as np

class InferenceSession:
    def __init__(self, path, providers=None):
        self.path = path

    def run(self, output_names, feeds):
        ids = np.ascontiguousarray(feeds["item_ids"], dtype=np.int64)
        with tempfile.TemporaryDirectory() as d:
            ids.tofile(os.path.join(d, "in.bin"))
            subprocess.run([os.environ["DELTAREC_NODE"], os.environ["DELTAREC_RUNNER"], self.path, d,
                            str(ids.shape[0]), str(ids.shape[1])], check=True)
            with open(os.path.join(d, "shapes.json")) as f:
                shapes = json.load(f)
            names = output_names or list(shapes)
            return [np.fromfile(os.path.join(d, n + ".bin"), dtype=np.float32).reshape(shapes[n]) for n in names]
`;
const RUNNER = `
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
const [model, dir, rows, cols] = process.argv.slice(2);
const ort = await import(process.env.DELTAREC_ORT_URL);
const session = await ort.InferenceSession.create(model);
const ids = new BigInt64Array(new Uint8Array(readFileSync(join(dir, 'in.bin'))).buffer);
const out = await session.run({ item_ids: new ort.Tensor('int64', ids, [Number(rows), Number(cols)]) });
const shapes = {};
for (const [name, t] of Object.entries(out)) {
  writeFileSync(join(dir, name + '.bin'), new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  shapes[name] = t.dims;
}
writeFileSync(join(dir, 'shapes.json'), JSON.stringify(shapes));
`;
/** Runs the first python block of docs/onnx.md (without its example print) and prints recommend(histories). */
const HARNESS = `
import json, re, sys
doc = open(sys.argv[1]).read()
code = re.search(r"\`\`\`python\\n(.*?)\`\`\`", doc, re.S).group(1)
code = "\\n".join(line for line in code.splitlines() if not line.startswith("print("))
exec(code)
print(json.dumps(recommend(json.load(open("histories.json")))))
`;

test('the Python code of docs/onnx.md ranks like recommend', { skip: skipPython }, async () => {
  // The content-delta export of the first test (made here when that test was filtered out).
  if (!exported.has('content-delta')) await checkExport('content-delta', await fit(split, cases[0][1]));
  const { model, file } = exported.get('content-delta')!;
  const dir = await mkdtemp(join(root, 'python-'));
  copyFileSync(file, join(dir, 'beauty.onnx'));
  copyFileSync(`${file}.json`, join(dir, 'beauty.onnx.json'));
  writeFileSync(join(dir, 'onnxruntime.py'), ORT_STAND_IN);
  writeFileSync(join(dir, 'runner.mjs'), RUNNER);
  writeFileSync(join(dir, 'harness.py'), HARNESS);
  const all = histories(model.maxLength).slice(0, 300);
  writeFileSync(join(dir, 'histories.json'), JSON.stringify(all));
  const result = spawnSync(
    'python3',
    ['harness.py', fileURLToPath(new URL('../docs/onnx.md', import.meta.url))],
    {
      cwd: dir,
      encoding: 'utf8',
      env: {
        ...process.env,
        PYTHONPATH: dir,
        DELTAREC_NODE: process.execPath,
        DELTAREC_RUNNER: join(dir, 'runner.mjs'),
        DELTAREC_ORT_URL: import.meta.resolve(ORT_MODULE),
      },
    },
  );
  assert.equal(result.status, 0, result.stderr);
  const got = JSON.parse(result.stdout) as string[][];
  const want = recommend(model, all, { k: 10 }).map((r) => r.items);
  assert.deepEqual(got, want);
  assert.ok(got.filter((items) => items.length === 10).length > 280);
});

/** A Python with the onnx package (the system one has it when Debian's python3-onnx is installed), or null. */
const pythonWithOnnx =
  ['python3', '/usr/bin/python3'].find((python) => spawnSync(python, ['-c', 'import onnx']).status === 0) ??
  null;

test(
  'every exported graph passes onnx.checker with full shape inference',
  { skip: pythonWithOnnx ? false : 'no python3 with the onnx package (Debian: python3-onnx)' },
  () => {
    const files = [...exported.values()].map((e) => e.file);
    assert.ok(files.length > 0, 'run with the export tests');
    const check = [
      'import sys, onnx',
      'for path in sys.argv[1:]:',
      '    model = onnx.load(path)',
      '    onnx.checker.check_model(model, full_check=True)',
      '    assert [o.name for o in model.graph.output] == ["user_vector", "scores"]',
      '    assert model.opset_import[0].version == 17',
      'print(len(sys.argv) - 1)',
    ].join('\n');
    const result = spawnSync(pythonWithOnnx!, ['-c', check, ...files], { encoding: 'utf8' });
    assert.equal(result.status, 0, result.stderr);
    assert.equal(result.stdout.trim(), String(files.length));
  },
);

test(
  'the service catalog (added, updated, deleted items) is exported and ranks like the service',
  { skip },
  async () => {
    const modelDir = join(root, 'served');
    const fixture = await buildFixtureModel(modelDir, { epochs: 1 });
    const ids = fixture.split.itemIds;
    const service = await createService({ modelDir, workers: 0 });
    const changes = [
      {
        method: 'POST',
        url: '/items',
        payload: { id: 'added-1', text: fixture.fields.title[5] },
        status: 201,
      },
      { method: 'POST', url: '/items', payload: { id: ids[7], text: fixture.fields.title[9] }, status: 200 },
      { method: 'DELETE', url: `/items/${ids[8]}`, status: 200 },
    ] as const;
    for (const { status, ...request } of changes) {
      const response = await service.app.inject(request);
      assert.equal(response.statusCode, status, response.body);
    }
    const rng = new Random(8);
    const live = [...ids.slice(1), 'added-1'];
    const all = Array.from({ length: 60 }, (_, h) => {
      const seq = Array.from({ length: 1 + rng.nextInt(40) }, () => live[rng.nextInt(live.length)]);
      if (h % 3 === 0) seq.push(['added-1', ids[7], ids[8]][h % 9 === 0 ? 0 : h % 9 === 3 ? 1 : 2]);
      return seq;
    });
    const expected: { id: string; score: number }[][] = [];
    for (const items of all) {
      const response = await service.app.inject({ method: 'POST', url: '/recommend', payload: { items } });
      assert.equal(response.statusCode, 200, response.body);
      expected.push(response.json().items);
    }
    await service.close();

    const out = join(root, 'served.onnx');
    const { code, err: stderr } = await exportCli(['--model', modelDir, '--format', 'onnx', '--out', out]);
    assert.equal(code, 0, stderr);
    assert.match(stderr, /applied 3 catalog changes/);
    const sidecar = JSON.parse(readFileSync(`${out}.json`, 'utf8')) as OnnxSidecar;
    assert.equal(
      sidecar.item_ids.length,
      ids.length + 2,
      'the added item and the new row of the updated one',
    );
    assert.deepEqual(sidecar.item_ids.slice(-2), ['added-1', ids[7]]);
    assert.deepEqual(sidecar.retired, [7, 8]);
    const session = await ort!.InferenceSession.create(out);
    const width = sidecar.item_ids.length;
    const rows = feed(sidecar, all);
    const { scores } = await runGraph(session, rows);
    let maxDiff = 0;
    all.forEach((_, r) => {
      const top = topK(scores, r, width, rows[r], 10);
      assert.deepEqual(
        top.map((i) => sidecar.item_ids[i]),
        expected[r].map((item) => item.id),
        `history ${r}`,
      );
      top.forEach(
        (i, j) => (maxDiff = Math.max(maxDiff, Math.abs(scores[r * width + i] - expected[r][j].score))),
      );
    });
    assert.ok(maxDiff <= 1e-4, `max score difference ${maxDiff}`);
    assert.ok(!expected.flat().some((item) => item.id === ids[8]), 'a deleted item is not recommended');

    // --no-catalog exports the model as saved.
    const saved = join(root, 'saved.onnx');
    const plain = await exportCli(['--model', modelDir, '--format', 'onnx', '--out', saved, '--no-catalog']);
    assert.equal(plain.code, 0, plain.err);
    const savedSidecar = JSON.parse(readFileSync(`${saved}.json`, 'utf8')) as OnnxSidecar;
    assert.deepEqual(savedSidecar.item_ids, ids);
    assert.deepEqual(savedSidecar.retired, []);
  },
);

test('deltarec export: usage errors, a missing model, a knn model, and no overwrite without --force', async () => {
  const model = await fit(split, { ...small, epochs: 1, model: 'sasrec', blocks: 1 });
  const modelDir = join(root, 'cli-model');
  await save(model, modelDir);
  const out = join(root, 'cli.onnx');

  let r = await exportCli(['--model', modelDir, '--format', 'tflite', '--out', out]);
  assert.equal(r.code, 2);
  assert.match(r.err, /deltarec export: unknown --format 'tflite' \(known: onnx\)/);
  r = await exportCli(['--model', modelDir, '--out', out]);
  assert.equal(r.code, 2);
  assert.match(r.err, /deltarec export: --format required/);
  r = await exportCli(['--model', join(root, 'no-such-model'), '--format', 'onnx', '--out', out]);
  assert.equal(r.code, 1);
  assert.match(r.err, /no-such-model: model directory does not exist/);
  const knnDir = join(root, 'knn');
  await save(await fit(split, { model: 'knn', content: built.content! }), knnDir);
  r = await exportCli(['--model', knnDir, '--format', 'onnx', '--out', out]);
  assert.equal(r.code, 1);
  assert.match(r.err, /model kind 'knn' is not supported \(expected 'sasrec'\)/);
  r = await exportCli([
    '--model',
    modelDir,
    '--format',
    'onnx',
    '--out',
    out,
    '--catalog',
    join(root, 'absent.log'),
  ]);
  assert.equal(r.code, 1);
  assert.match(r.err, /deltarec export: cannot read .*absent\.log/);
  r = await exportCli(['--model', modelDir, '--format', 'onnx', '--out', join(root, 'no-dir', 'x.onnx')]);
  assert.equal(r.code, 1);
  assert.match(r.err, /no-dir: directory does not exist/);
  r = await exportCli(['--model', modelDir, '--format', 'onnx', '--out', knnDir, '--force']);
  assert.equal(r.code, 1);
  assert.match(r.err, /knn exists and is not a file; it is never replaced/);
  assert.ok(existsSync(join(knnDir, 'manifest.json')));
  assert.ok(!existsSync(out) && !existsSync(`${out}.json`), 'failed exports write nothing');

  r = await exportCli(['--model', modelDir, '--format', 'onnx', '--out', out]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.err, /deltarec export: wrote .*cli\.onnx \(\d+ bytes; id, d 16/);
  const first = readFileSync(out);
  // Refused without --force, whether the .onnx or only its sidecar exists; nothing is touched.
  r = await exportCli(['--model', modelDir, '--format', 'onnx', '--out', out]);
  assert.equal(r.code, 1);
  assert.match(r.err, /cli\.onnx already exists \(pass --force to replace it\)/);
  const lone = join(root, 'lone.onnx');
  writeFileSync(`${lone}.json`, 'user data');
  r = await exportCli(['--model', modelDir, '--format', 'onnx', '--out', lone]);
  assert.equal(r.code, 1);
  assert.match(r.err, /lone\.onnx\.json already exists \(pass --force to replace it\)/);
  assert.ok(!existsSync(lone));
  assert.equal(readFileSync(`${lone}.json`, 'utf8'), 'user data');
  // --force replaces both (a model retrained with another seed gives other bytes).
  await save(await fit(split, { ...small, epochs: 1, model: 'sasrec', blocks: 1, seed: 9 }), modelDir);
  r = await exportCli(['--model', modelDir, '--format', 'onnx', '--out', out, '--force']);
  assert.equal(r.code, 0, r.err);
  assert.notDeepEqual(readFileSync(out), first);
  assert.deepEqual(
    readdirSync(root).filter((f) => f.includes('.tmp-')),
    [],
    'no temporary files are left',
  );
});

test('writeFilesAtomically refuses existing targets before writing and leaves no partial files', async () => {
  const dir = await mkdtemp(join(root, 'atomic-'));
  const a = join(dir, 'a.bin');
  const b = join(dir, 'b.bin');
  writeFileSync(b, 'keep');
  const chunks = [Uint8Array.of(1, 2), new Uint8Array(70_000).fill(7), Uint8Array.of(3)];
  await assert.rejects(
    writeFilesAtomically(
      [
        { path: a, chunks },
        { path: b, chunks },
      ],
      { overwrite: false },
    ),
    (error: unknown) => error instanceof FileExistsError && error.path === b,
  );
  assert.deepEqual(readdirSync(dir), ['b.bin']);
  await writeFilesAtomically(
    [
      { path: a, chunks },
      { path: b, chunks },
    ],
    { overwrite: true },
  );
  for (const path of [a, b]) {
    const bytes = readFileSync(path);
    assert.equal(bytes.length, 70_003);
    assert.deepEqual([bytes[0], bytes[1], bytes[2], bytes[70_002]], [1, 2, 7, 3]);
  }
  await assert.rejects(
    writeFilesAtomically([{ path: join(dir, 'missing', 'c.bin'), chunks }], { overwrite: false }),
    /ENOENT/,
  );
  assert.deepEqual(readdirSync(dir).sort(), ['a.bin', 'b.bin']);
});

test('protobuf varints: unsigned, multi-byte and negative int64 (10 bytes, two’s complement)', () => {
  assert.deepEqual([...varint(0)], [0]);
  assert.deepEqual([...varint(1)], [1]);
  assert.deepEqual([...varint(300)], [0xac, 0x02]);
  assert.deepEqual([...varint(-1)], [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
  assert.deepEqual([...varint(-2)], [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
  assert.throws(() => varint(2 ** 60), /not a safe integer/);
});
