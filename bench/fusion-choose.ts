/**
 * Chooses a fusion method on the backtest (issue 15, docs/cold-start.md "Cold-aware fusion") from the rank files of
 * bench/fusion-candidates.ts, then reports every method on the test-period files. A method is a family of the
 * candidate grid (which terms may be non-zero) and optionally a gate (one parameter set per bucket of an input
 * feature). Its parameters are the family's best (by all-cases NDCG@10) on the cases they are fitted on. The backtest
 * decides by repeated 2-fold cross-fitting over users (fit on one half of the inner test users, score on the other,
 * both ways; --repeats user hashings), so a family with more free terms wins only if it also wins out of sample.
 *
 *   node --import tsx bench/fusion-choose.ts --backtest runs/cand/backtest-seed0.bin \
 *     --test runs/cand/test-seed0.bin,runs/cand/test-seed1.bin [--json out.json]
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    backtest: { type: 'string' },
    test: { type: 'string', default: '' },
    repeats: { type: 'string', default: '5' },
    json: { type: 'string' },
  },
});
if (!values.backtest) {
  console.error(
    'usage: bench/fusion-choose.ts --backtest F.bin [--test A.bin,B.bin] [--repeats 5] [--json F]',
  );
  process.exit(2);
}

interface Combo {
  w: number;
  wc: number;
  b: number;
  v: number;
}
interface RankFile {
  path: string;
  count: number;
  combos: Combo[];
  cold: number[];
  users: string[];
  coldInputShare: number[];
  length: number[];
  ranks: Uint8Array;
}

function read(path: string): RankFile {
  const bytes = readFileSync(path);
  const size = bytes.readUInt32LE(0);
  const header = JSON.parse(bytes.subarray(4, 4 + size).toString());
  const ranks = new Uint8Array(bytes.subarray(4 + size));
  if (ranks.length !== header.combos.length * header.count) throw new Error(`${path}: truncated`);
  return { ...header, path, ranks };
}

const GAIN = Array.from({ length: 256 }, (_, r) => (r < 10 ? 1 / Math.log2(r + 2) : 0));

interface Family {
  name: string;
  /** Free terms (the family's parameter count per gate bucket). */
  terms: number;
  /** The grid's combinations this family may use. */
  allows: (c: Combo) => boolean;
}
const FAMILIES: Family[] = [
  { name: 'fixed weight w (current fusion)', terms: 1, allows: (c) => c.wc === 0 && c.b === 0 && c.v === 0 },
  { name: 'w + cold-item lexical weight wc', terms: 2, allows: (c) => c.b === 0 && c.v === 0 },
  { name: 'w + cold-item bias b', terms: 2, allows: (c) => c.wc === 0 && c.v === 0 },
  { name: 'w + last-item weight v', terms: 2, allows: (c) => c.wc === 0 && c.b === 0 },
  { name: 'w + wc + b', terms: 3, allows: (c) => c.v === 0 },
  { name: 'w + wc + v', terms: 3, allows: (c) => c.b === 0 },
  { name: 'w + b + v', terms: 3, allows: (c) => c.wc === 0 },
  { name: 'w + wc + b + v', terms: 4, allows: () => true },
];
interface Gate {
  name: string;
  buckets: number;
  bucket: (f: RankFile, c: number) => number;
}
const GATES: Gate[] = [
  { name: 'none', buckets: 1, bucket: () => 0 },
  {
    name: 'cold share of the input (0 / <0.5 / >=0.5)',
    buckets: 3,
    bucket: (f, c) => (f.coldInputShare[c] === 0 ? 0 : f.coldInputShare[c] < 0.5 ? 1 : 2),
  },
];

/** Per bucket, the allowed combination with the largest NDCG sum over the selected cases (ties: the first). */
function fitMethod(f: RankFile, family: Family, gate: Gate, use: (c: number) => boolean): number[] {
  const sums = Array.from({ length: gate.buckets }, () => new Float64Array(f.combos.length));
  for (let c = 0; c < f.count; c++) {
    if (!use(c)) continue;
    const s = sums[gate.bucket(f, c)];
    for (let k = 0; k < f.combos.length; k++) s[k] += GAIN[f.ranks[k * f.count + c]];
  }
  return sums.map((s) => {
    let best = -1;
    for (let k = 0; k < f.combos.length; k++)
      if (family.allows(f.combos[k]) && (best < 0 || s[k] > s[best])) best = k;
    return best;
  });
}

/** NDCG@10 and HR@10 (all, cold, warm) of per-bucket combinations (given as combos) over the selected cases. */
function scoreMethod(f: RankFile, gate: Gate, chosen: Combo[], use: (c: number) => boolean) {
  const index = chosen.map((x) =>
    f.combos.findIndex((c) => c.w === x.w && c.wc === x.wc && c.b === x.b && c.v === x.v),
  );
  if (index.some((k) => k < 0)) throw new Error(`${f.path}: a chosen combination is not in its grid`);
  const ndcg = [0, 0, 0];
  const hr = [0, 0, 0];
  const n = [0, 0, 0];
  for (let c = 0; c < f.count; c++) {
    if (!use(c)) continue;
    const r = f.ranks[index[gate.bucket(f, c)] * f.count + c];
    for (const s of [0, f.cold[c] ? 1 : 2]) {
      ndcg[s] += GAIN[r];
      hr[s] += r < 10 ? 1 : 0;
      n[s]++;
    }
  }
  return { ndcg: ndcg.map((v, s) => v / Math.max(n[s], 1)), hr: hr.map((v, s) => v / Math.max(n[s], 1)) };
}

function fold(user: string, salt: number): number {
  let h = 2166136261 ^ salt;
  for (let i = 0; i < user.length; i++) h = Math.imul(h ^ user.charCodeAt(i), 16777619);
  h = Math.imul(h ^ (h >>> 15), 2246822507);
  return (h >>> 13) & 1;
}

const backtest = read(values.backtest);
const tests = values.test ? values.test.split(',').map(read) : [];
const repeats = Number(values.repeats);
const fmt = (v: number) => v.toFixed(4);
const meanStd = (xs: number[]) => {
  const m = xs.reduce((a, b) => a + b, 0) / xs.length;
  const sd = Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / Math.max(xs.length - 1, 1));
  return `${fmt(m)} ± ${fmt(sd)}`;
};
interface Method {
  family: Family;
  gate: Gate;
  fitted: Combo[];
  inSample: number;
  /** Per backtest case, its NDCG@10 out of fold (mean over the repeats). */
  outOfFold: Float64Array;
  cross: number;
}
const methods: Method[] = [];
for (const gate of GATES) {
  for (const family of FAMILIES) {
    const fitted = fitMethod(backtest, family, gate, () => true).map((k) => backtest.combos[k]);
    const inSample = scoreMethod(backtest, gate, fitted, () => true).ndcg[0];
    const outOfFold = new Float64Array(backtest.count);
    for (let r = 0; r < repeats; r++) {
      const folds = backtest.users.map((u) => fold(u, r));
      for (const f of [0, 1]) {
        const half = fitMethod(backtest, family, gate, (c) => folds[c] !== f);
        for (let c = 0; c < backtest.count; c++)
          if (folds[c] === f)
            outOfFold[c] +=
              GAIN[backtest.ranks[half[gate.bucket(backtest, c)] * backtest.count + c]] / repeats;
      }
    }
    const cross = outOfFold.reduce((a, b) => a + b, 0) / backtest.count;
    methods.push({ family, gate, fitted, inSample, outOfFold, cross });
  }
}

// The choice: one-standard-error rule on the cross-fitted score. Among the methods within one paired standard
// error (of the per-case difference) of the best, the one with the fewest free parameters (ties: the higher score).
const best = methods.reduce((a, m) => (m.cross > a.cross ? m : a));
const params = (m: Method) => m.family.terms * m.gate.buckets;
const withinOneSe = (m: Method) => {
  const n = backtest.count;
  let sum = 0;
  let squares = 0;
  for (let c = 0; c < n; c++) {
    const d = best.outOfFold[c] - m.outOfFold[c];
    sum += d;
    squares += d * d;
  }
  const mean = sum / n;
  const se = Math.sqrt((squares / n - mean * mean) / (n - 1));
  return { se, within: mean <= se };
};
const chosen = methods
  .filter((m) => withinOneSe(m).within)
  .reduce((a, m) => (params(m) < params(a) || (params(m) === params(a) && m.cross > a.cross) ? m : a));

const out: Record<string, unknown>[] = [];
console.log(
  `backtest ${backtest.path}: ${backtest.count} cases; test: ${tests.map((t) => t.path).join(', ')}`,
);
console.log(
  '| method | parameters (fitted on the whole backtest) | backtest in-sample all | backtest cross-fitted all (paired SE to the best) | test cold | test warm | test all | test HR cold / warm / all |',
);
console.log('| --- | --- | --- | --- | --- | --- | --- | --- |');
for (const m of methods) {
  const { family, gate, fitted } = m;
  const scores = tests.map((t) => scoreMethod(t, gate, fitted, () => true));
  const shown = fitted.map((c) => `w ${c.w}, wc ${c.wc}, b ${c.b}, v ${c.v}`).join(' / ');
  const seg = (s: number, key: 'ndcg' | 'hr') => meanStd(scores.map((x) => x[key][s]));
  const name = `${family.name}${gate.buckets > 1 ? `, gate: ${gate.name}` : ''}`;
  const mark = m === chosen ? ' **(chosen)**' : m === best ? ' (best cross-fitted)' : '';
  console.log(
    `| ${name}${mark} | ${shown} | ${fmt(m.inSample)} | ${fmt(m.cross)} (${fmt(withinOneSe(m).se)}) |` +
      (scores.length
        ? ` ${seg(1, 'ndcg')} | ${seg(2, 'ndcg')} | ${seg(0, 'ndcg')} | ${seg(1, 'hr')} / ${seg(2, 'hr')} / ${seg(0, 'hr')} |`
        : ''),
  );
  out.push({
    family: family.name,
    gate: gate.name,
    chosen: m === chosen,
    parameters: fitted,
    backtestInSample: m.inSample,
    backtestCrossFitted: m.cross,
    pairedSeToBest: withinOneSe(m).se,
    test: scores.map((s, i) => ({ file: tests[i].path, ...s })),
  });
}
if (values.json)
  writeFileSync(values.json, JSON.stringify({ backtest: backtest.path, methods: out }, null, 1) + '\n');
