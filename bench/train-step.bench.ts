/**
 * One SASRec training step (forward, backward, Adam) on the reference workload, deltarec against PyTorch 1.13
 * (bench/torch_sasrec.py) in the same run, plus the fused output layer's GFLOP/s as a share of the machine's FMA
 * peak measured in the same run.
 *
 * Workload: batch 128, max length 64, 12,000 items, input lengths log-normal with mean about 7 (capped at 64; one
 * sequence has the full 64 so deltarec's trimming to the longest sequence gains nothing), d = 64 and 128,
 * 2 blocks, 1 head, ff = d, dropout 0.3, ReLU, full softmax cross-entropy.
 * PyTorch runs two output layers: logits at all batch x 64 positions (the usual implementation) and at the
 * non-padding positions only; it uses its faster thread count (1 or 2, tried per case). Measurements of the two
 * libraries are interleaved in rounds so that load from other processes affects both alike. If torch's OpenBLAS
 * does not recognize the CPU (it reports the generic "Prescott" core inside some VMs) the benchmark sets
 * OPENBLAS_CORETYPE to the AVX-512 or AVX2 kernels, so the baseline is not handicapped.
 */
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { kernels, loadNativeAddon } from '../src/kernels/index.js';
import { SASRec, sasrecConfig, type Batch } from '../src/model/sasrec.js';
import { createOptimizer, trainStep } from '../src/train/trainer.js';
import { Random } from '../src/util/random.js';
import type { Benchmark } from './index.js';

const BATCH = 128;
const MAX_LENGTH = 64;
const NUM_ITEMS = 12000;
const DIMS = [64, 128];
const ROUNDS = 5;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Left-padded batch with log-normal lengths (mean about 7), one full-length row, uniform random items. */
function makeBatch(seed: number): Batch {
  const rng = new Random(seed);
  const sigma = 1;
  const mu = Math.log(7) - (sigma * sigma) / 2;
  const T = MAX_LENGTH;
  const lengths = new Int32Array(BATCH);
  for (let b = 0; b < BATCH; b++) {
    const len = Math.round(Math.exp(mu + sigma * rng.nextGaussian()));
    lengths[b] = b === 0 ? T : Math.min(T, Math.max(1, len));
  }
  const inputs = new Int32Array(BATCH * T);
  const targets = new Int32Array(BATCH * T);
  for (let b = 0; b < BATCH; b++)
    for (let t = T - lengths[b]; t < T; t++) {
      inputs[b * T + t] = 1 + rng.nextInt(NUM_ITEMS);
      targets[b * T + t] = 1 + rng.nextInt(NUM_ITEMS);
    }
  return { size: BATCH, T, inputs, targets, lengths };
}

/** The PyTorch side as a long-lived child: one JSON request per line, one JSON reply per line. */
class TorchRunner {
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly replies: ((line: string) => void)[] = [];
  private stderr = '';

  constructor(python: string, batchFile: string, env: NodeJS.ProcessEnv) {
    const script = fileURLToPath(new URL('./torch_sasrec.py', import.meta.url));
    this.child = spawn(python, [script, batchFile, String(NUM_ITEMS)], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env,
    });
    this.child.stderr.on('data', (chunk: Buffer) => (this.stderr += chunk.toString()));
    createInterface({ input: this.child.stdout }).on('line', (line) => this.replies.shift()?.(line));
    this.child.on('exit', (code) => {
      for (const reply of this.replies.splice(0))
        reply(JSON.stringify({ error: `exited ${code}: ${this.stderr}` }));
    });
  }

  /** Wall milliseconds of each of `steps` training steps. */
  async steps(d: number, mode: 'all' | 'nonpad', threads: number, steps: number): Promise<number[]> {
    const line = await new Promise<string>((resolve) => {
      this.replies.push(resolve);
      this.child.stdin.write(JSON.stringify({ d, mode, threads, steps }) + '\n');
    });
    const reply = JSON.parse(line) as { ms?: number[]; error?: string };
    if (!reply.ms) throw new Error(`torch_sasrec.py: ${reply.error}`);
    return reply.ms;
  }

  close(): void {
    this.child.stdin.end();
  }
}

/** The first Python with torch and numpy (env DELTAREC_PYTHON, then python3, then Debian's /usr/bin/python3). */
function findTorch(): { python: string; version: string } | null {
  const candidates = [process.env.DELTAREC_PYTHON, 'python3', '/usr/bin/python3'].filter(
    (p): p is string => !!p,
  );
  for (const python of candidates) {
    const probe = spawnSync(python, ['-c', 'import torch, numpy; print(torch.__version__)'], {
      encoding: 'utf8',
    });
    if (probe.status === 0) return { python, version: probe.stdout.trim() };
  }
  return null;
}

/** The OpenBLAS core type torch's BLAS picks on this CPU (OPENBLAS_VERBOSE=2 prints it at load). */
function openblasCore(python: string): string {
  const probe = spawnSync(python, ['-c', 'import torch; (torch.ones(64, 64) @ torch.ones(64, 64)).sum()'], {
    encoding: 'utf8',
    env: { ...process.env, OPENBLAS_VERBOSE: '2' },
  });
  return /Core: (\S+)/.exec(probe.stdout + probe.stderr)?.[1] ?? 'unknown';
}

async function run(): Promise<Record<string, number | string>> {
  const addon = loadNativeAddon();
  const results: Record<string, number | string> = { kernels: kernels.name };
  if (!addon)
    console.log('WARNING: native addon not built; timing the TypeScript kernels (not the real engine).');
  else console.log(`kernels: native (${addon.isa()}, ${addon.threads()} threads)`);

  const batch = makeBatch(7);
  let real = 0;
  for (let b = 0; b < BATCH; b++) real += batch.lengths[b];
  console.log(
    `batch: ${BATCH} x ${batch.T}, ${real} non-padding positions (mean length ${(real / BATCH).toFixed(2)})`,
  );
  results.nonpad_positions = real;

  const found = findTorch();
  const batchFile = join(tmpdir(), `deltarec-bench-batch-${process.pid}.bin`);
  let torch: TorchRunner | null = null;
  if (found) {
    const raw = new Int32Array(2 + 2 * BATCH * batch.T);
    raw[0] = BATCH;
    raw[1] = batch.T;
    raw.set(batch.inputs, 2);
    raw.set(batch.targets, 2 + BATCH * batch.T);
    writeFileSync(batchFile, raw);
    // Debian's torch does its matrix products in OpenBLAS, which may not recognize the CPU inside a VM and fall
    // back to generic SSE3 kernels (about 10x slower); give it the kernels this CPU supports, as deltarec uses.
    const env = { ...process.env };
    const core = openblasCore(found.python);
    if (!env.OPENBLAS_CORETYPE && core === 'Prescott' && addon && addon.isa() !== 'portable') {
      env.OPENBLAS_CORETYPE = addon.isa() === 'avx512' ? 'SkylakeX' : 'Haswell';
    }
    torch = new TorchRunner(found.python, batchFile, env);
    console.log(
      `PyTorch ${found.version} (${found.python}); OpenBLAS core detected: ${core}` +
        (env.OPENBLAS_CORETYPE ? `, using OPENBLAS_CORETYPE=${env.OPENBLAS_CORETYPE}` : ''),
    );
    results.torch_openblas_core = env.OPENBLAS_CORETYPE ?? core;
  } else {
    console.log('PyTorch not available (no python3 with torch and numpy): torch columns are NaN');
  }

  const peaks: number[] = [];
  if (addon) results.fma_peak_gflops_1t = addon.fmaPeak(1, 0.5);

  const rows: string[][] = [];
  const shares: number[] = [];
  try {
    for (const d of DIMS) {
      const model = new SASRec(
        sasrecConfig({ numItems: NUM_ITEMS, d, strategy: 'id', dropout: 0.3, activation: 'relu', seed: 1 }),
      );
      const optimizer = createOptimizer(model, { lr: 1e-3 });
      const deltarecStep = () => {
        const t0 = performance.now();
        trainStep(model, optimizer, batch);
        return performance.now() - t0;
      };
      for (let i = 0; i < 2; i++) deltarecStep();

      // PyTorch thread count per case: the faster of 1 and 2 after a warm-up step.
      const torchThreads = { all: 2, nonpad: 2 };
      if (torch) {
        for (const mode of ['all', 'nonpad'] as const) {
          const timing: Record<number, number> = {};
          for (const threads of [1, 2]) {
            await torch.steps(d, mode, threads, 1);
            timing[threads] = median(await torch.steps(d, mode, threads, mode === 'all' ? 2 : 3));
          }
          torchThreads[mode] = timing[1] < timing[2] ? 1 : 2;
          console.log(
            `d=${d} torch ${mode}: 1 thread ${timing[1].toFixed(0)} ms, 2 threads ${timing[2].toFixed(0)} ms -> ${torchThreads[mode]}`,
          );
        }
      }

      // Output layer alone: the fused kernel on the model's item matrix at the non-padding rows.
      const hidden = new Float32Array(real * d);
      const rng = new Random(3);
      for (let i = 0; i < hidden.length; i++) hidden[i] = rng.nextGaussian() * 0.5;
      const targets = new Int32Array(real);
      for (let r = 0, b = 0; b < BATCH; b++)
        for (let t = batch.T - batch.lengths[b]; t < batch.T; t++)
          targets[r++] = batch.targets[b * batch.T + t];
      const dHidden = new Float32Array(real * d);
      const dItems = new Float32Array((NUM_ITEMS + 1) * d);
      const items = model.itemEmbeddings();
      const flops = 6 * real * NUM_ITEMS * d;
      const headShares: number[] = [];
      const headCpuShares: number[] = [];
      const cpuSeconds = (u: NodeJS.CpuUsage) => (u.user + u.system) / 1e6;
      /** Times the fused output layer right after a short FMA-peak run, so both see the same machine load. */
      const outputLayer = () => {
        const cpuPeak0 = process.cpuUsage();
        const peak = addon ? addon.fmaPeak(2, 0.1) : NaN;
        const cpuPeak = process.cpuUsage(cpuPeak0);
        const cpu0 = process.cpuUsage();
        const t0 = performance.now();
        kernels.softmaxCrossEntropy(
          hidden,
          items,
          targets,
          real,
          d,
          NUM_ITEMS + 1,
          1 / real,
          dHidden,
          dItems,
        );
        const ms = performance.now() - t0;
        const cpu = process.cpuUsage(cpu0);
        peaks.push(peak);
        // Share of the peak just measured, in wall time and in CPU seconds of the process (the latter is robust
        // to the process being descheduled on a shared machine).
        headShares.push(flops / ms / 1e6 / peak);
        headCpuShares.push(flops / cpuSeconds(cpu) / ((peak * 0.1 * 1e9) / cpuSeconds(cpuPeak)));
        return ms;
      };
      outputLayer();
      headShares.length = 0;
      headCpuShares.length = 0;

      const ours: number[] = [];
      const theirsAll: number[] = [];
      const theirsNonpad: number[] = [];
      const head: number[] = [];
      for (let round = 0; round < ROUNDS; round++) {
        ours.push(deltarecStep(), deltarecStep());
        if (torch) {
          theirsAll.push(...(await torch.steps(d, 'all', torchThreads.all, 1)));
          theirsNonpad.push(...(await torch.steps(d, 'nonpad', torchThreads.nonpad, 2)));
        }
        head.push(outputLayer());
      }
      const ms = median(ours);
      const allMs = torch ? median(theirsAll) : NaN;
      const nonpadMs = torch ? median(theirsNonpad) : NaN;
      const headMs = median(head);
      const headGflops = flops / headMs / 1e6;
      const share = addon ? median(headShares) : NaN;
      const cpuShare = addon ? median(headCpuShares) : NaN;
      shares.push(share);
      Object.assign(results, {
        [`deltarec_step_ms_d${d}`]: ms,
        [`torch_all_ms_d${d}`]: allMs,
        [`torch_nonpad_ms_d${d}`]: nonpadMs,
        [`torch_threads_all_d${d}`]: torchThreads.all,
        [`torch_threads_nonpad_d${d}`]: torchThreads.nonpad,
        [`speedup_vs_torch_all_d${d}`]: allMs / ms,
        [`speedup_vs_torch_nonpad_d${d}`]: nonpadMs / ms,
        [`output_layer_ms_d${d}`]: headMs,
        [`output_layer_gflops_d${d}`]: headGflops,
        [`output_layer_peak_share_d${d}`]: share,
        [`output_layer_peak_share_cpu_d${d}`]: cpuShare,
      });
      rows.push([
        String(d),
        ms.toFixed(1),
        `${allMs.toFixed(1)} (${torchThreads.all}t)`,
        `${nonpadMs.toFixed(1)} (${torchThreads.nonpad}t)`,
        (allMs / ms).toFixed(2) + 'x',
        (nonpadMs / ms).toFixed(2) + 'x',
        headMs.toFixed(1),
        headGflops.toFixed(0),
        (100 * share).toFixed(0) + '%',
        (100 * cpuShare).toFixed(0) + '%',
      ]);
    }
  } finally {
    torch?.close();
    rmSync(batchFile, { force: true });
  }
  results.fma_peak_gflops_2t = peaks.length ? median(peaks) : NaN;
  results.output_layer_peak_share = Math.min(...shares);

  const header = [
    'd',
    'deltarec ms',
    'torch all ms',
    'torch nonpad ms',
    'vs all',
    'vs nonpad',
    'output layer ms',
    'GFLOP/s',
    'of peak',
    'of peak (CPU s)',
  ];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => '| ' + cells.map((c, i) => c.padStart(widths[i])).join(' | ') + ' |';
  console.log(
    `\nmedians of ${2 * ROUNDS} deltarec steps, ${ROUNDS} torch all-position steps and ${2 * ROUNDS} torch non-padding steps, interleaved`,
  );
  console.log(line(header));
  console.log('|' + widths.map((w) => '-'.repeat(w + 2)).join('|') + '|');
  for (const r of rows) console.log(line(r));
  console.log(
    `FMA peak: ${Number(results.fma_peak_gflops_1t ?? NaN).toFixed(0)} GFLOP/s on 1 thread, ` +
      `${Number(results.fma_peak_gflops_2t).toFixed(0)} on 2 (median of ${peaks.length}). Output layer = fused ` +
      `forward + softmax CE + both gradients, 6 x rows x items x d flops; its share of peak is the median ratio to ` +
      `an FMA-peak run just before each timing (wall clock, and in CPU seconds of the process)`,
  );
  return results;
}

export const benchmark: Benchmark = { name: 'train-step', run };
