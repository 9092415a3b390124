/**
 * `node --import tsx bench/scoring.ts --model DIR [--against CHECKOUT] [--batches 1,8] [--length N] [--json FILE]`:
 * CPU time per request of the service's scoring path (sequence encoding, catalog product, top-k; no HTTP) on a
 * model artifact (e.g. one bench:serve built in .cache/bench-serve/), with the Beauty test histories bench:serve
 * sends (--length N: random histories of N items instead). With --against, the same requests also go through
 * another checkout's Scorer in the same process, alternating, so the ratio is measured side by side.
 * Reports the median of --repeats passes over --requests requests (default 512; the first pass warms up and is
 * dropped), the catalog product's rate in GFLOP/s (2 x items x d per request over the whole CPU time per request,
 * encoding and top-k included, so a lower bound) and, measured in the same run, the machine's one-thread FMA peak.
 *
 * This checkout is measured three times, side by side: the exact fp32 path (`scoreTopK`), the int8 first pass with
 * the exact rescore (`scoreTopKQuantized`, kernels/quantized.ts) and the shared scan of the scoring worker
 * (serve/scan.ts: the batch's requests join at once and it runs one pass in chunks), which must return the same
 * answers (checked on every batch). For each: CPU per request, the median scoring time per batch (the kernel call, wall clock) with the bytes
 * it streams per second, and for the int8 pass the number of items rescored exactly per request (median, p99, max).
 */
import { existsSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { loadNativeAddon } from '../src/kernels/index.js';
import { Random } from '../src/util/random.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    against: { type: 'string' },
    batches: { type: 'string', default: '1,8' },
    length: { type: 'string', default: '0' },
    repeats: { type: 'string', default: '4' },
    requests: { type: 'string', default: '512' },
    bodies: {
      type: 'string',
      default: new URL('../.cache/bench-serve/bench-bodies.json', import.meta.url).pathname,
    },
    json: { type: 'string' },
  },
});
function fail(message: string): never {
  process.stderr.write(`bench/scoring: ${message}\n`);
  process.exit(2);
}
if (!values.model) fail('--model DIR is required');
if (!existsSync(values.bodies!)) {
  fail(
    `no request bodies at ${values.bodies} (npm run bench:serve writes them; or pass --bodies FILE, a JSON array of /recommend bodies)`,
  );
}

interface Checkout {
  name: string;
  score: (requests: unknown[]) => void;
}

/** A checkout's Scorer on the model, behind one function (its own modules: models, scorer, engine). */
async function loadCheckout(
  root: string,
  name: string,
  both = false,
): Promise<Checkout & { ids: string[]; numItems: number; d: number; variants: Checkout[] }> {
  const models = await import(new URL('src/serve/models.ts', root).href);
  const scorer = await import(new URL('src/serve/scorer.ts', root).href);
  const engine = await import(new URL('src/serve/engine.ts', root).href);
  const scan = both ? await import(new URL('src/serve/scan.ts', root).href) : null;
  const wall = performance.now();
  const cpu = cpuMs();
  const loaded = await models.loadScoringModel(values.model);
  const loadedAt = [performance.now(), cpuMs()];
  const s = new scorer.Scorer(loaded.model, loaded.numWarm, loaded.fusion);
  console.log(
    `${name}: model loaded in ${((loadedAt[0] - wall) / 1000).toFixed(2)} s (CPU ${((loadedAt[1] - cpu) / 1000).toFixed(2)} s), ` +
      `scorer ready after ${((performance.now() - loadedAt[0]) / 1000).toFixed(2)} s more (CPU ${((cpuMs() - loadedAt[1]) / 1000).toFixed(2)} s); ` +
      `resident memory ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MB`,
  );
  // This checkout: both scoring paths on the same loaded model (scoring does not change it).
  const variants: Checkout[] = [];
  if (both) {
    for (const quantized of [false, true]) {
      const started = performance.now();
      const v = new scorer.Scorer(loaded.model, loaded.numWarm, loaded.fusion, quantized);
      const name = quantized ? 'int8 first pass' : 'exact fp32';
      console.log(`  ${name}: scorer ready in ${((performance.now() - started) / 1000).toFixed(2)} s`);
      variants.push(variant(name, v, engine.packBatch));
    }
    // The shared scan (serve/scan.ts) on the int8 scorer: the batch's requests join at once, one pass in chunks.
    const int8 = new scorer.Scorer(loaded.model, loaded.numWarm, loaded.fusion, true);
    const shared = new scan.SharedScan(int8);
    variants.push(
      variant(
        'shared scan',
        {
          candidates: new Int32Array(0),
          scoreEach: (batch, answer) => {
            const started = performance.now();
            shared.join(batch, (r: number, i: Int32Array, sc: Float32Array) =>
              answer(r, i, sc, { score: performance.now() - started }),
            );
            while (shared.size > 0) shared.step();
          },
        },
        engine.packBatch,
      ),
    );
  }
  return {
    name,
    ids: loaded.artifact.manifest.items.ids,
    numItems: loaded.model.numItems,
    d: loaded.model.config.d,
    score: (requests) => s.score(engine.packBatch(requests)),
    variants,
  };
}

interface Variant extends Checkout {
  /** Per batch: the kernel call's wall time (ms); per request: items rescored exactly (int8 pass). */
  batchMs: number[];
  candidates: number[];
  answers: [Int32Array, Float32Array][];
}

/** A Scorer that records its scoring time per batch, the candidates per request and the last answers. */
function variant(
  name: string,
  s: {
    scoreEach: (
      batch: unknown,
      answer: (r: number, i: Int32Array, sc: Float32Array, t: { score: number }) => void,
    ) => void;
    candidates: Int32Array;
  },
  packBatch: (requests: unknown[]) => unknown,
): Variant {
  const v: Variant = {
    name,
    batchMs: [],
    candidates: [],
    answers: [],
    score: (requests) => {
      let ms = 0;
      v.answers = [];
      s.scoreEach(packBatch(requests), (r, indices, scores, times) => {
        ms = times.score;
        v.answers[r] = [indices, scores];
      });
      v.batchMs.push(ms);
      v.candidates.push(...s.candidates);
    },
  };
  return v;
}

const own = await loadCheckout(new URL('../', import.meta.url).href, 'this checkout', !values.against);
const checkouts: Checkout[] = values.against ? [own] : own.variants;
if (values.against) {
  const root = `file://${values.against.replace(/\/?$/, '/')}`;
  checkouts.unshift(await loadCheckout(root, values.against));
}

const length = Number(values.length);
const random = new Random(1);
const index = new Map(own.ids.map((id, i) => [id, i]));
const bodies = (JSON.parse(readFileSync(values.bodies!, 'utf8')) as string[]).slice(
  0,
  Number(values.requests),
);
const requests = bodies.map((body) => ({
  history:
    length > 0
      ? Int32Array.from({ length }, () => 1 + random.nextInt(own.numItems))
      : Int32Array.from((JSON.parse(body) as { items: string[] }).items, (id) => index.get(id)!),
  exclude: new Int32Array(0),
  k: 10,
  includeCold: true,
  excludeSeen: true,
}));
const meanLength = requests.reduce((sum, r) => sum + r.history.length, 0) / requests.length;

function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

const results: Record<string, number | string> = { model: values.model, mean_history: meanLength };
const quantile = (xs: number[], q: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * q))];
const median = (xs: number[]) => quantile(xs, 0.5);
const variants = checkouts as Variant[];
for (const batch of values.batches!.split(',').map(Number)) {
  const times = new Map<Checkout, number[]>(checkouts.map((c) => [c, []]));
  if (!values.against) {
    // Both paths must give the same answers: items and scores, bit for bit.
    for (let i = 0; i + batch <= requests.length; i += batch) {
      for (const v of variants) v.score(requests.slice(i, i + batch));
      const [a, ...others] = variants.map((v) => v.answers);
      const same = (x: [Int32Array, Float32Array], y: [Int32Array, Float32Array]) =>
        x[0].join() === y[0].join() && x[1].join() === y[1].join();
      others.forEach((b, o) => {
        if (a.some((x, r) => !same(x, b[r])))
          fail(`${variants[o + 1].name} answered batch ${i / batch} differently from the exact path`);
      });
    }
    for (const v of variants) {
      v.batchMs = [];
      v.candidates = [];
    }
  }
  for (let repeat = 0; repeat <= Number(values.repeats); repeat++) {
    for (const checkout of checkouts) {
      const started = cpuMs();
      let scored = 0;
      for (let i = 0; i + batch <= requests.length; i += batch) {
        checkout.score(requests.slice(i, i + batch));
        scored += batch;
      }
      if (repeat > 0) times.get(checkout)!.push((cpuMs() - started) / scored);
    }
  }
  if (!values.against) {
    const dp = Math.ceil(own.d / 4) * 4;
    const rows = own.numItems + 1;
    for (const [v, bytes, key] of [
      [variants[0], rows * own.d * 4, 'exact'],
      [variants[1], rows * (dp + 12), 'int8'],
      [variants[2], rows * (dp + 12), 'scan'],
    ] as const) {
      const ms = median(v.batchMs.slice(v.batchMs.length / (Number(values.repeats) + 1))); // warm-up pass dropped
      console.log(
        `batch ${batch}, ${v.name}: scoring ${ms.toFixed(2)} ms per batch (median, wall), ${(bytes / 1e6 / ms).toFixed(1)} GB/s of the ${(bytes / 1e6).toFixed(0)} MB it streams`,
      );
      results[`${key}_score_ms_per_batch${batch}`] = Number(ms.toFixed(2));
      results[`${key}_gbytes_per_s_batch${batch}`] = Number((bytes / 1e6 / ms).toFixed(1));
    }
    const c = variants[1].candidates;
    console.log(
      `batch ${batch}, int8 first pass: items rescored exactly per request: median ${median(c)}, p99 ${quantile(c, 0.99)}, max ${Math.max(...c)} (of ${own.numItems})`,
    );
    results[`int8_candidates_median_batch${batch}`] = median(c);
    results[`int8_candidates_p99_batch${batch}`] = quantile(c, 0.99);
    results[`int8_candidates_max_batch${batch}`] = Math.max(...c);
    results[`int8_speedup_score_batch${batch}`] = Number(
      (
        (results[`exact_score_ms_per_batch${batch}`] as number) /
        (results[`int8_score_ms_per_batch${batch}`] as number)
      ).toFixed(2),
    );
  }
  const parts = checkouts.map((c) => `${c.name} ${median(times.get(c)!).toFixed(3)} ms`);
  const ratio =
    checkouts.length === 2 ? median(times.get(checkouts[0])!) / median(times.get(checkouts[1])!) : NaN;
  console.log(
    `batch ${batch}, histories of ${meanLength.toFixed(1)} items on average: CPU per request ${parts.join(', ')}${checkouts.length === 2 ? `; ratio ${ratio.toFixed(2)}` : ''}`,
  );
  // This checkout's int8 pass (or the last checkout with --against); each variant also under its own key.
  const ms = median(times.get(values.against ? checkouts[checkouts.length - 1] : checkouts[1])!);
  if (!values.against)
    (['exact', 'int8', 'scan'] as const).forEach((key, v) => {
      results[`${key}_cpu_ms_per_request_batch${batch}`] = Number(
        median(times.get(checkouts[v])!).toFixed(3),
      );
    });
  const gflops = (2 * own.numItems * own.d) / (ms * 1e6);
  results[`cpu_ms_per_request_batch${batch}`] = Number(ms.toFixed(3));
  results[`score_gflops_batch${batch}`] = Number(gflops.toFixed(1));
  console.log(`  catalog product ${gflops.toFixed(1)} GFLOP/s (2 x ${own.numItems} x ${own.d} per request)`);
  if (checkouts.length === 2) results[`ratio_batch${batch}`] = Number(ratio.toFixed(2));
}
const peak = loadNativeAddon()?.fmaPeak(1, 1) ?? NaN;
console.log(`one-thread FMA peak measured now: ${peak.toFixed(1)} GFLOP/s`);
results.fma_peak_gflops_1thread = Number(peak.toFixed(1));
if (values.json) await writeFile(values.json, JSON.stringify(results, null, 2) + '\n');
