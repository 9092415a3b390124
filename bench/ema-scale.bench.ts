/**
 * `--ema` at large catalogs: the training step of catalog-scale (content-delta SASRec, sampled softmax with k = 256,
 * lazy Adam, batch 128 x length 128, d = 128) without a weight average, with the lazy average (the trainer's: the
 * touched item rows only) and with the dense average of every row (the trainer's before lazy averaging), decay 0.999,
 * at 12k, 131k and 1M items. One worker process per size, one size at a time (a 1M worker holds two averages,
 * about 4.5 GB); in it the three variants take their steps in interleaved rounds after one warm-up step each, and
 * the median is reported, with the median time spent in the average's own updates (less noisy on a loaded machine than
 * a difference of step times).
 */
import type { Benchmark } from './index.js';
import { median, Worker } from './catalog-scale.bench.js';

const SIZES: [string, number][] = [
  ['12k', 12_000],
  ['131k', 131_085],
  ['1m', 1_000_000],
];
const VARIANTS: [string, string][] = [
  ['no_ema', 'step'],
  ['lazy_ema', 'step ema-lazy'],
  ['dense_ema', 'step ema-dense'],
];
const ROUNDS = 7;

async function run(): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  console.log('content-delta SASRec, sampled softmax k = 256, batch 128 x length 128, d = 128; --ema 0.999');
  for (const [label, n] of SIZES) {
    const worker = new Worker(n, 'sampled', 'batch');
    const first = await worker.ready;
    if (first !== 'ready') throw new Error(`ema-scale worker ${label}: ${first}`);
    const ms = new Map(VARIANTS.map(([name]) => [name, [] as number[]]));
    const emaMs = new Map(VARIANTS.map(([name]) => [name, [] as number[]]));
    let rows = 0;
    for (const [, line] of VARIANTS) await worker.request(line);
    for (let r = 0; r < ROUNDS; r++) {
      for (const [name, line] of VARIANTS) {
        const reply = await worker.request(line);
        ms.get(name)!.push(reply.ms);
        emaMs.get(name)!.push(reply.emaMs);
        if (name === 'lazy_ema') rows = reply.rows;
      }
    }
    const stats = await worker.request('stats');
    worker.close();
    for (const [name] of VARIANTS) out[`${name}_step_ms_${label}`] = Math.round(median(ms.get(name)!));
    for (const kind of ['lazy', 'dense'])
      out[`${kind}_ema_update_ms_${label}`] = Math.round(median(emaMs.get(`${kind}_ema`)!) * 10) / 10;
    out[`lazy_ema_rows_per_step_${label}`] = rows;
    const steps = VARIANTS.map(([name]) => {
      const xs = ms.get(name)!;
      return `${name.replace('_', ' ')} ${median(xs).toFixed(0)} ms (${xs.map((x) => x.toFixed(0)).join(', ')})`;
    });
    console.log(`  ${label.padStart(4)} items: ${steps.join(' · ')}`);
    console.log(
      `             in the average's updates: lazy ${out[`lazy_ema_update_ms_${label}`]} ms, dense ${out[`dense_ema_update_ms_${label}`]} ms; the lazy average visits ${rows.toLocaleString('en-US')} rows per step (the touched rows) of ${n.toLocaleString('en-US')}; peak RSS ${stats.rssMb.toFixed(0)} MB`,
    );
  }
  for (const kind of ['lazy', 'dense']) {
    out[`${kind}_ema_update_growth_12k_to_1m`] =
      Math.round((out[`${kind}_ema_update_ms_1m`] / out[`${kind}_ema_update_ms_12k`]) * 100) / 100;
    out[`${kind}_ema_cost_growth_12k_to_1m`] =
      Math.round((out[`${kind}_ema_step_ms_1m`] / out[`${kind}_ema_step_ms_12k`]) * 100) / 100;
  }
  console.log(
    `  12k -> 1m: step with the average lazy x${out.lazy_ema_cost_growth_12k_to_1m}, dense x${out.dense_ema_cost_growth_12k_to_1m}; the average's updates lazy x${out.lazy_ema_update_growth_12k_to_1m}, dense x${out.dense_ema_update_growth_12k_to_1m}`,
  );
  return out;
}

export const benchmark: Benchmark = { name: 'ema-scale', run };
