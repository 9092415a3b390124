/**
 * Aggregation of experiment runs (mean ± std over seeds), the results table in the paper's Table 2 layout, and the
 * analysis plots.
 */
import type { Bucket, CaseAnalyses } from './analyses.js';
import { meanStd, type MetricValues } from './metrics.js';
import { barChart, lineChart } from './svg.js';

export type Segment = 'cold' | 'warm' | 'all';
export const SEGMENTS: readonly Segment[] = ['cold', 'warm', 'all'];

/** One finished run (one model, one seed), as stored in DIR/runs/<model>-seed<s>.json. */
export interface RunRecord {
  model: string;
  strategy: string;
  seed: number;
  fingerprint: string;
  metrics: Record<Segment, MetricValues>;
  /** Other evaluation modes, keyed like 'recommendCold=false,filterCold=true'. */
  modes?: Record<string, Record<Segment, MetricValues>>;
  analyses: CaseAnalyses;
  emptyInputs: number;
  training: { epochs: number; bestEpoch: number; bestMetric: number | null; stopReason: string } | null;
  /** Training time of the model (for a reused training: of the run that trained it). */
  fitSeconds: number;
  /** The trained model of an earlier run was reused (runs differing only in lexicalWeight). */
  reusedTraining?: boolean;
  evalSeconds: number;
  finishedAt: string;
}

export type Aggregated = Record<string, Record<Segment, Record<string, { mean: number; std: number }>>>;

/** results.json: for each model, mean and std over seeds of every metric of every segment. */
export function aggregate(runs: readonly RunRecord[], modelOrder: readonly string[]): Aggregated {
  const out: Aggregated = {};
  for (const model of modelOrder) {
    const mine = runs.filter((r) => r.model === model);
    if (mine.length === 0) continue;
    const entry = {} as Record<Segment, Record<string, { mean: number; std: number }>>;
    for (const segment of SEGMENTS) {
      entry[segment] = {};
      for (const key of Object.keys(mine[0].metrics[segment])) {
        entry[segment][key] = meanStd(mine.map((r) => r.metrics[segment][key]));
      }
    }
    out[model] = entry;
  }
  return out;
}

const DISPLAY_NAMES: Record<string, string> = {
  knn: 'Content KNN',
  sasrec: 'SASRec',
  'content-init': 'SASRec + content init',
  'content-delta': 'SASRec + trainable delta',
  'content-frozen': 'SASRec + frozen content',
};

export function displayName(model: string): string {
  return DISPLAY_NAMES[model] ?? model;
}

function cell(v: { mean: number; std: number } | undefined): string {
  return v ? `${v.mean.toFixed(4)} ± ${v.std.toFixed(4)}` : '-';
}

/** A Markdown table like the paper's Table 2 (NDCG@k and HR@k for cold, warm and all cases), mean ± std. */
export function resultsMarkdown(
  title: string,
  results: Aggregated,
  runs: readonly RunRecord[],
  k = 10,
  notes: string[] = [],
): string {
  const lines = [
    `# ${title}`,
    '',
    `NDCG@${k} and HR@${k}, mean ± std over seeds (sample std). Cold/warm: test cases whose ground truth is a cold/warm item; all: every case.`,
    '',
    `| Model | Seeds | Cold NDCG@${k} | Warm NDCG@${k} | All NDCG@${k} | Cold HR@${k} | Warm HR@${k} | All HR@${k} | Fit s |`,
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ];
  for (const [model, r] of Object.entries(results)) {
    const mine = runs.filter((x) => x.model === model);
    const fit = meanStd(mine.map((x) => x.fitSeconds)).mean;
    lines.push(
      `| ${displayName(model)} | ${mine.length} | ${cell(r.cold[`ndcg@${k}`])} | ${cell(r.warm[`ndcg@${k}`])} | ${cell(r.all[`ndcg@${k}`])} | ` +
        `${cell(r.cold[`hr@${k}`])} | ${cell(r.warm[`hr@${k}`])} | ${cell(r.all[`hr@${k}`])} | ${fit.toFixed(0)} |`,
    );
  }
  if (notes.length) lines.push('', ...notes.map((n) => `- ${n}`));
  return lines.join('\n') + '\n';
}

/** The same table as plain text for a terminal. */
export function resultsText(results: Aggregated, k = 10): string {
  const header = [
    'model',
    `cold ndcg@${k}`,
    `warm ndcg@${k}`,
    `all ndcg@${k}`,
    `cold hr@${k}`,
    `warm hr@${k}`,
    `all hr@${k}`,
  ];
  const rows = Object.entries(results).map(([model, r]) => [
    displayName(model),
    ...(['ndcg', 'hr'] as const).flatMap((m) =>
      SEGMENTS.map((s) => {
        const v = r[s][`${m}@${k}`];
        return v.std > 0 ? `${v.mean.toFixed(4)}±${v.std.toFixed(4)}` : v.mean.toFixed(4);
      }),
    ),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  return [line(header), ...rows.map(line)].join('\n') + '\n';
}

/** Mean of each bucket's NDCG over a model's runs. */
function meanBuckets(
  runs: readonly RunRecord[],
  pick: (a: CaseAnalyses) => Bucket[],
): { labels: string[]; ndcg: number[] } {
  const first = pick(runs[0].analyses);
  return {
    labels: first.map((b) => `${b.label} (${b.count})`),
    ndcg: first.map((_, i) => meanStd(runs.map((r) => pick(r.analyses)[i].ndcg)).mean),
  };
}

/** SVG files (name -> content): NDCG@10 by cold share of the input and by ground-truth training frequency. */
export function analysisPlots(
  runs: readonly RunRecord[],
  modelOrder: readonly string[],
  exclude: ReadonlySet<string>,
): Record<string, string> {
  const models = modelOrder.filter((m) => !exclude.has(m) && runs.some((r) => r.model === m));
  if (models.length === 0) return {};
  const plots: Record<string, string> = {};
  for (const [file, pick, title, xLabel] of [
    [
      'ndcg-by-cold-input-share.svg',
      (a: CaseAnalyses) => a.coldInputShare,
      'NDCG@10 by the share of cold items in the input',
      'cold items in the input (test cases)',
    ],
    [
      'ndcg-by-target-frequency.svg',
      (a: CaseAnalyses) => a.targetFrequency,
      'NDCG@10 by the ground truth\u2019s training frequency',
      'occurrences of the ground-truth item in training (test cases)',
    ],
  ] as const) {
    const series = models.map((m) => ({
      name: displayName(m),
      ...meanBuckets(
        runs.filter((r) => r.model === m),
        pick,
      ),
    }));
    plots[file] = barChart({
      title,
      xLabel,
      yLabel: 'NDCG@10',
      labels: series[0].labels,
      series: series.map((s) => ({ name: s.name, values: s.ndcg })),
      width: 760,
    });
  }
  return plots;
}

/** The delta_max sweep: NDCG@10 (all and cold) against delta_max, the unbounded model last. */
export function sweepPlot(results: Aggregated, points: { label: string; model: string }[], k = 10): string {
  const value = (model: string, segment: Segment) => results[model]?.[segment]?.[`ndcg@${k}`]?.mean ?? NaN;
  return lineChart({
    title: `NDCG@${k} against delta_max`,
    xLabel: 'delta_max',
    yLabel: `NDCG@${k}`,
    labels: points.map((p) => p.label),
    series: [
      { name: 'all cases', values: points.map((p) => value(p.model, 'all')) },
      { name: 'cold cases', values: points.map((p) => value(p.model, 'cold')) },
    ],
  });
}
