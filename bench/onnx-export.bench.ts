/**
 * ONNX export on a Beauty-sized model (12,101 items, d = 128, max length 64, 2 blocks, content-delta, untrained:
 * weights do not change the work): the time and size of `deltarec export`'s graph, and scoring the exported graph
 * with onnxruntime-node against the library's own scoring in the same run, on histories whose lengths follow the
 * log-normal of the training-step benchmark (mean about 7, capped at 64): throughput in batches of 128, and the
 * latency of one history at a time. Measurements of the two are interleaved in rounds, so load from other processes
 * affects both alike. Skips the runtime part when onnxruntime-node is not installed.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sasrecToOnnx } from '../src/model/onnx-export.js';
import { encodeOnnxModel } from '../src/model/onnx-proto.js';
import { SASRec, sasrecConfig } from '../src/model/sasrec.js';
import { writeFilesAtomically } from '../src/util/files.js';
import { Random } from '../src/util/random.js';
import type { Benchmark } from './index.js';

const NUM_ITEMS = 12101;
const D = 128;
const MAX_LENGTH = 64;
const BATCH = 128;
const HISTORIES = 1024;
const SINGLES = 200;
const ROUNDS = 3;

interface OrtSession {
  run(feeds: Record<string, unknown>): Promise<Record<string, { data: unknown }>>;
}
interface Ort {
  InferenceSession: { create(path: string): Promise<OrtSession> };
  Tensor: new (type: 'int64', data: BigInt64Array, dims: number[]) => unknown;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function histories(rng: Random): Int32Array[] {
  const mu = Math.log(7) - 0.5;
  return Array.from({ length: HISTORIES }, () => {
    const length = Math.min(MAX_LENGTH, Math.max(1, Math.round(Math.exp(mu + rng.nextGaussian()))));
    return Int32Array.from({ length }, () => 1 + rng.nextInt(NUM_ITEMS));
  });
}

/** Left-padded int64 batch of histories[start, start + count). */
function pack(ort: Ort, inputs: Int32Array[], start: number, count: number): unknown {
  let width = 1;
  for (let b = 0; b < count; b++) width = Math.max(width, inputs[start + b].length);
  const flat = new BigInt64Array(count * width);
  for (let b = 0; b < count; b++) {
    const h = inputs[start + b];
    for (let i = 0; i < h.length; i++) flat[b * width + width - h.length + i] = BigInt(h[i]);
  }
  return new ort.Tensor('int64', flat, [count, width]);
}

export const benchmark: Benchmark = {
  name: 'onnx-export',
  async run() {
    const rng = new Random(1);
    const content = new Float32Array((NUM_ITEMS + 1) * D);
    for (let i = 1; i <= NUM_ITEMS; i++) {
      let s = 0;
      for (let j = 0; j < D; j++) s += (content[i * D + j] = rng.nextGaussian()) ** 2;
      for (let j = 0; j < D; j++) content[i * D + j] /= Math.sqrt(s);
    }
    const model = new SASRec(
      sasrecConfig({ numItems: NUM_ITEMS, d: D, maxLength: MAX_LENGTH, strategy: 'content-delta' }),
      content,
    );
    const itemIds = ['', ...Array.from({ length: NUM_ITEMS }, (_, i) => `item-${i + 1}`)];
    const dir = mkdtempSync(join(tmpdir(), 'deltarec-onnx-bench-'));
    const file = join(dir, 'model.onnx');
    try {
      let started = performance.now();
      const { model: graph, sidecar } = sasrecToOnnx({
        model,
        itemIds,
        numWarm: NUM_ITEMS,
        onnxFile: 'model.onnx',
      });
      const encoded = encodeOnnxModel(graph);
      const sidecarBytes = Buffer.from(JSON.stringify(sidecar));
      await writeFilesAtomically(
        [
          { path: file, chunks: encoded.chunks },
          { path: `${file}.json`, chunks: [sidecarBytes] },
        ],
        { overwrite: false },
      );
      const exportMs = performance.now() - started;
      console.log(
        `export: ${exportMs.toFixed(0)} ms (graph + fsynced write), model ${(encoded.length / 1e6).toFixed(1)} MB, ` +
          `sidecar ${(sidecarBytes.length / 1e3).toFixed(0)} kB`,
      );
      const results: Record<string, number | string> = {
        'onnx-export.ms': exportMs,
        'onnx-export.model_bytes': encoded.length,
      };

      let ort: Ort;
      try {
        const name = 'onnxruntime-node';
        ort = (await import(name)) as Ort;
      } catch {
        console.log('onnxruntime-node is not installed: the runtime comparison is skipped');
        return results;
      }
      started = performance.now();
      const session = await ort.InferenceSession.create(file);
      const loadMs = performance.now() - started;
      const inputs = histories(rng);
      const libScores = new Float32Array(BATCH * (NUM_ITEMS + 1));
      const libBatch = () => {
        for (let s = 0; s < HISTORIES; s += BATCH) model.score(inputs.slice(s, s + BATCH), libScores);
      };
      let maxDiff = 0;
      const ortBatch = async (check: boolean) => {
        for (let s = 0; s < HISTORIES; s += BATCH) {
          const out = await session.run({ item_ids: pack(ort, inputs, s, BATCH) });
          if (!check) continue;
          const scores = out.scores.data as Float32Array;
          model.score(inputs.slice(s, s + BATCH), libScores);
          for (let i = 0; i < scores.length; i++)
            if (i % (NUM_ITEMS + 1)) maxDiff = Math.max(maxDiff, Math.abs(scores[i] - libScores[i]));
        }
      };
      const libSingle = new Float32Array(NUM_ITEMS + 1);
      const singleLib: number[] = [];
      const singleOrt: number[] = [];
      await ortBatch(true); // warm-up and the agreement check
      libBatch();
      const batchLib: number[] = [];
      const batchOrt: number[] = [];
      for (let round = 0; round < ROUNDS; round++) {
        let t = performance.now();
        libBatch();
        batchLib.push(performance.now() - t);
        t = performance.now();
        await ortBatch(false);
        batchOrt.push(performance.now() - t);
        for (let i = 0; i < SINGLES / ROUNDS; i++) {
          const h = i % HISTORIES;
          t = performance.now();
          model.score([inputs[h]], libSingle);
          singleLib.push(performance.now() - t);
          t = performance.now();
          await session.run({ item_ids: pack(ort, inputs, h, 1) });
          singleOrt.push(performance.now() - t);
        }
      }
      const perSecond = (ms: number) => (HISTORIES / ms) * 1000;
      const lib = perSecond(median(batchLib));
      const onnx = perSecond(median(batchOrt));
      console.log(
        `onnxruntime-node session load: ${loadMs.toFixed(0)} ms; max |onnx - library| ${maxDiff.toExponential(2)}`,
      );
      console.log(
        `scores, batches of ${BATCH}: library ${lib.toFixed(0)} histories/s, onnxruntime-node ${onnx.toFixed(0)} ` +
          `histories/s (onnx / library = ${(onnx / lib).toFixed(2)}x)`,
      );
      console.log(
        `one history: library p50 ${median(singleLib).toFixed(2)} ms, onnxruntime-node p50 ` +
          `${median(singleOrt).toFixed(2)} ms`,
      );
      return {
        ...results,
        'onnx-export.session_load_ms': loadMs,
        'onnx-export.max_abs_diff': maxDiff,
        'onnx-export.library_histories_per_s': lib,
        'onnx-export.onnx_histories_per_s': onnx,
        'onnx-export.library_single_p50_ms': median(singleLib),
        'onnx-export.onnx_single_p50_ms': median(singleOrt),
      };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
};
