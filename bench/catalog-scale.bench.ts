/**
 * Training-step cost against catalog size: the full softmax grows with the catalog, the sampled loss (sampled
 * softmax, k = 256 negatives, lazy item updates) should not, with the negatives drawn per batch or per sequence
 * (128 draws of 256: 32,768 negative rows per step instead of 256). Content-delta SASRec, batch 128 x length 128 (every
 * sequence full length: 16,384 scored positions), d = 128, 2 blocks, on catalogs of 12k, 131k and 1M items.
 *
 * Each catalog size lives in its own process (catalog-scale-worker.ts), so peak RSS is per size, and the sizes
 * take their steps in interleaved rounds (12k, 131k, 1m, 12k, ...) so that load from other processes affects all
 * alike; the median of the rounds is reported. One warm-up step each is not timed.
 *
 * The full softmax at 1M items is not run (a step takes minutes on 2 cores): it is extrapolated linearly in the
 * catalog size from the measured 12k and 131k steps (the step cost is affine in the number of items: the output
 * layer and the dense Adam pass over the item table are linear in it, the rest is constant), and reported as such.
 * The full softmax at 131k gets one timed step, no warm-up.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { NegativesPer } from '../src/model/sasrec.js';
import type { Benchmark } from './index.js';

const SIZES: [string, number][] = [
  ['12k', 12_000],
  ['131k', 131_085],
  ['1m', 1_000_000],
];
const ROUNDS = 3;

/** A worker process holding one model; one request line, one reply line (also used by ema-scale.bench.ts). */
export class Worker {
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly waiting: ((line: string) => void)[] = [];
  private stderr = '';
  readonly ready: Promise<string>;

  constructor(numItems: number, loss: 'full' | 'sampled', negativesPer: NegativesPer) {
    const script = fileURLToPath(new URL('./catalog-scale-worker.ts', import.meta.url));
    const args = ['--import', 'tsx', script, String(numItems), loss, negativesPer];
    this.child = spawn(process.execPath, args, {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.child.stderr.on('data', (chunk: Buffer) => (this.stderr += chunk.toString()));
    createInterface({ input: this.child.stdout }).on('line', (line) => this.waiting.shift()?.(line));
    this.child.on('exit', (code) => {
      for (const reply of this.waiting.splice(0))
        reply(JSON.stringify({ error: `exited ${code}: ${this.stderr}` }));
    });
    this.ready = new Promise((resolve) => this.waiting.push(resolve));
  }

  async request(line: string): Promise<Record<string, number>> {
    const reply = await new Promise<string>((resolve) => {
      this.waiting.push(resolve);
      this.child.stdin.write(line + '\n');
    });
    const parsed = JSON.parse(reply) as Record<string, number> & { error?: string };
    if (parsed.error) throw new Error(`catalog-scale worker: ${parsed.error}`);
    return parsed;
  }

  close(): void {
    this.child.stdin.end();
  }
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Starts one worker per size (one at a time), warms each up, then times ROUNDS interleaved rounds. */
async function interleaved(
  sizes: [string, number][],
  loss: 'full' | 'sampled',
  rounds: number,
  warmup: boolean,
  negativesPer: NegativesPer = 'batch',
): Promise<{ ms: Map<string, number[]>; stats: Map<string, Record<string, number>> }> {
  const workers = new Map<string, Worker>();
  for (const [label, n] of sizes) {
    const w = new Worker(n, loss, negativesPer);
    const first = await w.ready;
    if (first !== 'ready') throw new Error(`catalog-scale worker ${label}: ${first}`);
    if (warmup) await w.request('step');
    workers.set(label, w);
  }
  const ms = new Map(sizes.map(([label]) => [label, [] as number[]]));
  for (let r = 0; r < rounds; r++) {
    for (const [label] of sizes) ms.get(label)!.push((await workers.get(label)!.request('step')).ms);
  }
  const stats = new Map<string, Record<string, number>>();
  for (const [label, w] of workers) {
    stats.set(label, await w.request('stats'));
    w.close();
  }
  return { ms, stats };
}

async function run(): Promise<Record<string, number | string>> {
  const out: Record<string, number | string> = {};
  console.log(
    'content-delta SASRec, batch 128 x length 128, d = 128, 2 blocks; median step ms of interleaved rounds',
  );
  const sampled = await interleaved(SIZES, 'sampled', ROUNDS, true);
  for (const [label] of SIZES) {
    const ms = sampled.ms.get(label)!;
    const stats = sampled.stats.get(label)!;
    out[`sampled_step_ms_${label}`] = Math.round(median(ms));
    out[`sampled_peak_rss_mb_${label}`] = Math.round(stats.rssMb);
    console.log(
      `  sampled (k = 256) ${label.padStart(4)} items: ${median(ms).toFixed(0)} ms/step (${ms.map((x) => x.toFixed(0)).join(', ')}), peak RSS ${stats.rssMb.toFixed(0)} MB`,
    );
  }
  // Negatives per sequence: the same logits per step, 128 x 256 gathered rows; the 12k and 1m ends only.
  const ends: [string, number][] = [SIZES[0], SIZES[2]];
  const perSequence = await interleaved(ends, 'sampled', ROUNDS, true, 'sequence');
  for (const [label] of ends) {
    const ms = perSequence.ms.get(label)!;
    out[`sampled_per_sequence_step_ms_${label}`] = Math.round(median(ms));
    console.log(
      `  sampled (k = 256 per sequence) ${label.padStart(4)} items: ${median(ms).toFixed(0)} ms/step (${ms.map((x) => x.toFixed(0)).join(', ')}), peak RSS ${perSequence.stats.get(label)!.rssMb.toFixed(0)} MB`,
    );
  }
  out.sampled_per_sequence_cost_growth_12k_to_1m =
    Math.round(
      ((out.sampled_per_sequence_step_ms_1m as number) / (out.sampled_per_sequence_step_ms_12k as number)) *
        100,
    ) / 100;
  const big = sampled.stats.get('1m')!;
  out.peak_rss_mb_1m = Math.round(big.rssMb);
  out.bytes_per_item_1m = Math.round(big.bytesPerItem);

  const full12k = await interleaved([SIZES[0]], 'full', 2, true);
  const full131k = await interleaved([SIZES[1]], 'full', 1, false);
  const f12 = median(full12k.ms.get('12k')!);
  const f131 = median(full131k.ms.get('131k')!);
  const f1m = f12 + ((f131 - f12) / (131_085 - 12_000)) * (1_000_000 - 12_000);
  out.full_step_ms_12k = Math.round(f12);
  out.full_step_ms_131k = Math.round(f131);
  out.full_step_ms_1m = Math.round(f1m);
  out.full_step_ms_1m_method = 'extrapolated linearly in catalog size from the measured 12k and 131k steps';
  console.log(
    `  full softmax       12k items: ${f12.toFixed(0)} ms/step (${full12k.ms
      .get('12k')!
      .map((x) => x.toFixed(0))
      .join(', ')})`,
  );
  console.log(`  full softmax      131k items: ${f131.toFixed(0)} ms/step (one step, no warm-up)`);
  console.log(`  full softmax        1m items: ${f1m.toFixed(0)} ms/step (extrapolated, not run)`);
  out.sampled_cost_growth_12k_to_1m =
    Math.round(((out.sampled_step_ms_1m as number) / (out.sampled_step_ms_12k as number)) * 100) / 100;
  out.full_over_sampled_1m = Math.round((f1m / (out.sampled_step_ms_1m as number)) * 10) / 10;
  console.log(
    `  sampled cost growth 12k -> 1m: x${out.sampled_cost_growth_12k_to_1m} (goal <= 1.5; per sequence x${out.sampled_per_sequence_cost_growth_12k_to_1m}); peak RSS at 1m: ${out.peak_rss_mb_1m} MB (goal < 4096); ${out.bytes_per_item_1m} bytes of item state per item`,
  );
  return out;
}

export const benchmark: Benchmark = { name: 'catalog-scale', run };
