/**
 * Aggregation of experiment runs (mean ± std over seeds), the results table in the paper's Table 2 layout, and the
 * analysis plots.
 */
import type { Bucket, CaseAnalyses } from './analyses.js';
import { meanStd, type MetricValues } from '../eval/metrics.js';
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
  /** Model or lexicalWeight 'auto': the variant and weight the backtest chose, with its table (api.ts LexicalChoice). */
  choice?: unknown;
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

/** Everything report.html shows. */
export interface HtmlReportInput {
  title: string;
  results: Aggregated;
  runs: readonly RunRecord[];
  k: number;
  notes: string[];
  /** The experiment config as stored in config.json. */
  config: unknown;
  /** The split's statistics (split-stats.json), null when not recorded. */
  splitStats: Record<string, unknown> | null;
  /** The machine the runs were made on (machine.json), null when not recorded. */
  machine: Record<string, unknown> | null;
  /** Extra sections (e.g. a sweep table): a heading and rows of cells, the first row the header. */
  tables: { heading: string; rows: string[][] }[];
  /** Plots by file name: SVG markup, inlined. */
  plots: Record<string, string>;
}

function escapeHtml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function htmlTable(rows: string[][], className = ''): string {
  const [head, ...body] = rows;
  const cells = (row: string[], tag: string) => row.map((c) => `<${tag}>${c}</${tag}>`).join('');
  return (
    `<table${className ? ` class="${className}"` : ''}><thead><tr>${cells(head, 'th')}</tr></thead><tbody>` +
    body.map((r) => `<tr>${cells(r, 'td')}</tr>`).join('') +
    '</tbody></table>'
  );
}

function keyValues(record: Record<string, unknown>): string {
  const rows = Object.entries(record).map(([k, v]) => [
    escapeHtml(k),
    escapeHtml(
      typeof v === 'string'
        ? v
        : typeof v === 'number' && !Number.isInteger(v)
          ? v.toPrecision(4)
          : JSON.stringify(v),
    ),
  ]);
  return htmlTable([['', ''], ...rows], 'kv');
}

/**
 * report.html: one self-contained page (no external resource, readable offline): the results table (mean ± std per
 * segment, the best value of each column marked), every plot inline, run times, the split statistics, the machine,
 * the notes and the config.
 */
export function resultsHtml(input: HtmlReportInput): string {
  const { results, runs, k } = input;
  const models = Object.keys(results);
  const columns = (['ndcg', 'hr'] as const).flatMap((metric) =>
    SEGMENTS.map((segment) => ({ metric, segment, key: `${metric}@${k}` })),
  );
  const best = columns.map(({ segment, key }) =>
    Math.max(...models.map((m) => results[m][segment][key]?.mean ?? -Infinity)),
  );
  const header = [
    'Model',
    'Seeds',
    ...columns.map(
      (c) => `${c.segment[0].toUpperCase()}${c.segment.slice(1)} ${c.metric.toUpperCase()}@${k}`,
    ),
  ];
  const resultRows = models.map((m) => [
    escapeHtml(displayName(m)),
    String(runs.filter((r) => r.model === m).length),
    ...columns.map(({ segment, key }, i) => {
      const v = results[m][segment][key];
      if (!v) return '-';
      const text = `${v.mean.toFixed(4)} ± ${v.std.toFixed(4)}`;
      return v.mean === best[i]
        ? `<strong class="best" title="best in this column">${text} ▲</strong>`
        : text;
    }),
  ]);
  const timeRows = models.map((m) => {
    const mine = runs.filter((r) => r.model === m);
    const trained = mine.filter((r) => !r.reusedTraining);
    const mean = (xs: number[]) => (xs.length ? (xs.reduce((a, b) => a + b, 0) / xs.length).toFixed(1) : '-');
    const epochs = trained.flatMap((r) => (r.training ? [r.training.epochs] : []));
    const stops = [...new Set(trained.flatMap((r) => (r.training ? [r.training.stopReason] : [])))];
    return [
      escapeHtml(displayName(m)),
      String(mine.length),
      mean(trained.map((r) => r.fitSeconds)),
      mean(mine.map((r) => r.evalSeconds)),
      epochs.length ? mean(epochs) : '-',
      escapeHtml(stops.join(', ') || (mine.some((r) => r.reusedTraining) ? 'reused training' : '-')),
    ];
  });
  const totalSeconds = runs.reduce((s, r) => s + (r.reusedTraining ? 0 : r.fitSeconds) + r.evalSeconds, 0);
  const plots = Object.entries(input.plots)
    .map(
      ([file, svg]) =>
        `<figure data-plot="${escapeHtml(file)}">${svg.replace(/^<\?xml[^>]*>\s*/, '')}<figcaption>${escapeHtml(file)}</figcaption></figure>`,
    )
    .join('\n');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${escapeHtml(input.title)}: deltarec experiment report</title>
<style>
  body { font: 14px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #1d2330; padding: 0 1rem; }
  table { border-collapse: collapse; margin: .5rem 0 1.5rem; }
  th, td { border: 1px solid #d0d5dd; padding: .3rem .6rem; text-align: right; font-variant-numeric: tabular-nums; }
  th:first-child, td:first-child { text-align: left; }
  thead th { background: #f2f4f7; }
  strong.best { color: #05603a; }
  table.kv thead { display: none; }
  figure { margin: 1rem 0; }
  figcaption { color: #667085; font-size: .85rem; }
  pre { background: #f6f7f9; padding: .8rem; overflow-x: auto; }
  .muted { color: #667085; }
</style>
</head>
<body>
<h1>${escapeHtml(input.title)}</h1>
<p class="muted">NDCG@${k} and HR@${k}, mean ± std over seeds (sample std); ▲ marks the best mean of each column.
Cold/warm: test cases whose ground truth is a cold/warm item; all: every case.</p>
<h2>Results</h2>
${htmlTable([header, ...resultRows], 'results')}
${input.tables.map((t) => `<h2>${escapeHtml(t.heading)}</h2>\n${htmlTable(t.rows.map((r) => r.map(escapeHtml)))}`).join('\n')}
<h2>Plots</h2>
${plots || '<p class="muted">No plots.</p>'}
<h2>Run times</h2>
<p class="muted">${runs.length} runs; total fit + evaluation time ${totalSeconds.toFixed(0)} s.</p>
${htmlTable([['Model', 'Runs', 'Mean fit s', 'Mean eval s', 'Mean epochs', 'Stopped by'], ...timeRows], 'times')}
<h2>Split statistics</h2>
${input.splitStats ? keyValues(input.splitStats) : '<p class="muted">Not recorded (runs made before split-stats.json existed).</p>'}
<h2>Machine</h2>
${input.machine ? keyValues(input.machine) : '<p class="muted">Not recorded.</p>'}
<h2>Notes</h2>
<ul>${input.notes.map((n) => `<li>${escapeHtml(n)}</li>`).join('')}</ul>
<h2>Config</h2>
<pre>${escapeHtml(JSON.stringify(input.config, null, 2))}</pre>
</body>
</html>
`;
}
