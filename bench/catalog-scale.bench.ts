/**
 * Training-step cost against catalog size: the full softmax grows with the catalog, the sampled loss (sampled
 * softmax, k = 256 negatives, lazy item updates) should not. Content-delta SASRec, batch 128 x length 128 (every
 * sequence full length: 16,384 scored positions), d = 128, 2 blocks, on catalogs of 12k, 131k and 1M items. Each
 * measurement runs in its own process (catalog-scale-worker.ts), so peak RSS is per catalog size.
 *
 * The full softmax at 1M items is not run (a step takes minutes on 2 cores): it is extrapolated linearly in the
 * catalog size from the measured 12k and 131k steps (the step cost is affine in the number of items: the output
 * layer and the dense Adam pass over the item table are linear, the rest is constant), and reported as such.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Benchmark } from './index.js';

const SIZES: [string, number][] = [
  ['12k', 12_000],
  ['131k', 131_085],
  ['1m', 1_000_000],
];

interface WorkerResult {
  ms: number[];
  rssMb: number;
  bytesPerItem: number;
}

function measure(numItems: number, loss: 'full' | 'sampled', warmup: number, steps: number): WorkerResult {
  const worker = fileURLToPath(new URL('./catalog-scale-worker.ts', import.meta.url));
  const r = spawnSync(
    process.execPath,
    ['--import', 'tsx', worker, String(numItems), loss, String(warmup), String(steps)],
    { encoding: 'utf8', maxBuffer: 1 << 20 },
  );
  if (r.status !== 0)
    throw new Error(`catalog-scale worker (${numItems} items, ${loss}) failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as WorkerResult;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

async function run(): Promise<Record<string, number | string>> {
  const out: Record<string, number | string> = {};
  console.log(
    'content-delta SASRec, batch 128 x length 128, d = 128, 2 blocks; median step ms (steps timed)',
  );
  for (const [label, n] of SIZES) {
    const r = measure(n, 'sampled', 1, 3);
    out[`sampled_step_ms_${label}`] = Math.round(median(r.ms));
    out[`sampled_peak_rss_mb_${label}`] = Math.round(r.rssMb);
    if (label === '1m') {
      out.peak_rss_mb_1m = Math.round(r.rssMb);
      out.bytes_per_item_1m = Math.round(r.bytesPerItem);
    }
    console.log(
      `  sampled (k = 256) ${label.padStart(4)} items: ${median(r.ms).toFixed(0)} ms/step (${r.ms.map((x) => x.toFixed(0)).join(', ')}), peak RSS ${r.rssMb.toFixed(0)} MB`,
    );
  }
  const full12k = measure(12_000, 'full', 1, 2);
  const full131k = measure(131_085, 'full', 0, 1);
  const f12 = median(full12k.ms);
  const f131 = median(full131k.ms);
  const perItem = (f131 - f12) / (131_085 - 12_000);
  const f1m = f12 + perItem * (1_000_000 - 12_000);
  out.full_step_ms_12k = Math.round(f12);
  out.full_step_ms_131k = Math.round(f131);
  out.full_step_ms_1m = Math.round(f1m);
  out.full_step_ms_1m_method = 'extrapolated linearly in catalog size from the measured 12k and 131k steps';
  console.log(
    `  full softmax       12k items: ${f12.toFixed(0)} ms/step (${full12k.ms.map((x) => x.toFixed(0)).join(', ')})`,
  );
  console.log(`  full softmax      131k items: ${f131.toFixed(0)} ms/step (one step, no warm-up)`);
  console.log(`  full softmax        1m items: ${f1m.toFixed(0)} ms/step (extrapolated, not run)`);
  out.sampled_cost_growth_12k_to_1m =
    Math.round(((out.sampled_step_ms_1m as number) / (out.sampled_step_ms_12k as number)) * 100) / 100;
  out.full_over_sampled_1m = Math.round((f1m / (out.sampled_step_ms_1m as number)) * 10) / 10;
  console.log(
    `  sampled cost growth 12k -> 1m: x${out.sampled_cost_growth_12k_to_1m} (goal <= 1.5); peak RSS at 1m: ${out.peak_rss_mb_1m} MB (goal < 4096); ${out.bytes_per_item_1m} bytes of item state per item`,
  );
  return out;
}

export const benchmark: Benchmark = { name: 'catalog-scale', run };
