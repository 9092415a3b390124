/**
 * `deltarec experiment`: models x seeds on one dataset, resumable. Every finished run is written atomically to
 * DIR/runs/<model>-seed<s>.json and skipped on the next invocation (when its configuration fingerprint matches);
 * then DIR/results.json, DIR/results.md, DIR/analyses.json, the SVG plots and DIR/report.html (all of it on one
 * offline page) are (re)written from all runs.
 * The config format is documented in docs/experiments.md.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { arch, cpus, platform, release, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { kernels, referenceKernels } from '../kernels/index.js';
import {
  chooseOnBacktest,
  evaluate,
  fit,
  MODEL_KINDS,
  withLexicalFusion,
  type FitOptions,
  type FittedModel,
  type LexicalChoice,
  type ModelKind,
} from '../api.js';
import { analyzeCases } from './analyses.js';
import { prepareData, type ContentConfig, type DataConfig, type PreparedData } from '../eval/data.js';
import {
  aggregate,
  analysisPlots,
  resultsHtml,
  resultsMarkdown,
  resultsText,
  SEGMENTS,
  sweepPlot,
  type Aggregated,
  type RunRecord,
} from './report.js';
import { tryLock, type Lock } from '../util/lock.js';

/** A named model: a strategy plus setting overrides (so new methods are new entries, not new code paths). */
export interface ModelEntry {
  name: string;
  /** 'auto': the variant (among autoModels) and fusion weight chosen on a backtest of the training period. */
  strategy: ModelKind | 'auto';
  /** Settings for this model only (model dimension, deltaMax, training options, ...). */
  overrides: Record<string, unknown>;
  /** Evaluation mode; default: the strategy's (plain SASRec without cold items, others with them). */
  evaluation?: { recommendColdItems?: boolean; filterColdInputs?: boolean };
}

export interface SweepConfig {
  /** Model entry whose parameter is swept. */
  base: string;
  param: string;
  values: number[];
  /** Model shown as the unbounded end of the sweep (content-init for deltaMax). */
  unbounded?: string;
}

export interface ExperimentConfig {
  name: string;
  data: DataConfig;
  content: ContentConfig;
  /** Settings shared by every model (SASRec configuration and training options; see FitOptions). */
  model: Record<string, unknown>;
  seeds: number[];
  models: ModelEntry[];
  sweep: SweepConfig | null;
  evaluation: { ks: number[]; allModes: boolean };
}

export const DEFAULT_MODELS = ['knn', 'sasrec', 'content-init', 'content-delta'];
const SETTING_KEYS = new Set([
  'd',
  'blocks',
  'heads',
  'ffWidth',
  'dropout',
  'maxLength',
  'deltaMax',
  'deltaDropout',
  'activation',
  'standardize',
  'epochs',
  'batchSize',
  'lr',
  'betas',
  'eps',
  'weightDecay',
  'gradClip',
  'patience',
  'lexicalWeight',
  'lexicalColdWeight',
  'lexicalLastWeight',
  'lexicalGrid',
  'autoModels',
  'loss',
  'negatives',
  'negativesPer',
  'sampler',
  'samplerPower',
  'gbceT',
]);

function fail(source: string, message: string): never {
  throw new Error(`${source}: ${message}`);
}

function checkSettings(source: string, where: string, settings: Record<string, unknown>): void {
  for (const key of Object.keys(settings)) {
    if (!SETTING_KEYS.has(key))
      fail(source, `${where}: unknown setting '${key}' (known: ${[...SETTING_KEYS].join(', ')})`);
  }
}

/** Name of the generated model for one sweep value, e.g. content-delta-deltaMax0.3. */
export function sweepModelName(sweep: { base: string; param: string }, value: number): string {
  return `${sweep.base}-${sweep.param}${value}`;
}

/** Validates a parsed config object and fills in defaults. */
export function parseExperimentConfig(raw: unknown, source: string): ExperimentConfig {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    fail(source, 'the config must be a JSON object');
  const c = raw as Record<string, unknown>;
  const known = new Set([
    'name',
    'description',
    'data',
    'content',
    'model',
    'seeds',
    'models',
    'sweep',
    'evaluation',
  ]);
  for (const key of Object.keys(c)) if (!known.has(key)) fail(source, `unknown field '${key}'`);
  if (typeof c.data !== 'object' || c.data === null) fail(source, `field 'data' is required (an object)`);
  const model = (c.model ?? {}) as Record<string, unknown>;
  checkSettings(source, `field 'model'`, model);
  const seeds = (c.seeds ?? [0, 1, 2, 3, 4]) as unknown[];
  if (!Array.isArray(seeds) || seeds.length === 0 || seeds.some((s) => !Number.isInteger(s))) {
    fail(source, `field 'seeds' must be a non-empty list of integers`);
  }
  const models: ModelEntry[] = ((c.models ?? DEFAULT_MODELS) as unknown[]).map((m, i) => {
    const entry = (typeof m === 'string' ? { name: m, strategy: m } : m) as Record<string, unknown>;
    const where = `models[${i}]`;
    if (typeof entry !== 'object' || entry === null)
      fail(source, `${where} must be a model name or an object`);
    const { name, strategy, evaluation, ...overrides } = entry;
    if (typeof name !== 'string' || !/^[A-Za-z0-9._-]+$/.test(name)) {
      fail(source, `${where}: 'name' must use only letters, digits, '.', '_' and '-'`);
    }
    const kind = (strategy ?? name) as string;
    if (kind !== 'auto' && !(MODEL_KINDS as readonly string[]).includes(kind)) {
      fail(source, `${where}: strategy '${kind}' is not one of ${MODEL_KINDS.join(', ')}, auto`);
    }
    checkSettings(source, where, overrides);
    return {
      name,
      strategy: kind as ModelEntry['strategy'],
      overrides,
      evaluation: evaluation as ModelEntry['evaluation'],
    };
  });
  let sweep: SweepConfig | null = null;
  if (c.sweep !== undefined) {
    const s = c.sweep as SweepConfig;
    // The base is a model entry (its overrides are kept) or a bare strategy name.
    const base =
      models.find((m) => m.name === s.base) ??
      ((MODEL_KINDS as readonly string[]).includes(s.base)
        ? { name: s.base, strategy: s.base as ModelKind, overrides: {} }
        : fail(source, `sweep.base '${s.base}' is neither a model nor a strategy`));
    if (!SETTING_KEYS.has(s.param)) fail(source, `sweep.param '${s.param}' is not a model setting`);
    if (!Array.isArray(s.values) || s.values.length === 0 || s.values.some((v) => typeof v !== 'number')) {
      fail(source, `sweep.values must be a non-empty list of numbers`);
    }
    if (s.unbounded !== undefined && !models.some((m) => m.name === s.unbounded)) {
      fail(source, `sweep.unbounded '${s.unbounded}' is not one of the models`);
    }
    for (const v of s.values) {
      const name = sweepModelName(s, v);
      if (!models.some((m) => m.name === name)) {
        models.push({ ...base, name, overrides: { ...base.overrides, [s.param]: v } });
      }
    }
    sweep = { base: s.base, param: s.param, values: s.values, unbounded: s.unbounded };
  }
  const names = new Set<string>();
  for (const m of models) {
    if (names.has(m.name)) fail(source, `model name '${m.name}' is used twice`);
    names.add(m.name);
  }
  const evaluation = (c.evaluation ?? {}) as { ks?: number[]; allModes?: boolean };
  return {
    name: typeof c.name === 'string' ? c.name : 'experiment',
    data: c.data as DataConfig,
    content: (c.content ?? {}) as ContentConfig,
    model,
    seeds: seeds as number[],
    models,
    sweep,
    evaluation: { ks: evaluation.ks ?? [10], allModes: evaluation.allModes ?? false },
  };
}

export async function readExperimentConfig(path: string): Promise<ExperimentConfig> {
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(path, 'utf8'));
  } catch (error) {
    throw new Error(`${path}: cannot read the config (${(error as Error).message})`, { cause: error });
  }
  return parseExperimentConfig(raw, path);
}

/** The settings of one model entry: the shared ones with the entry's overrides. */
function settingsOf(config: ExperimentConfig, entry: ModelEntry): Record<string, unknown> {
  return { ...config.model, ...entry.overrides };
}

/** What determines a run's result: data, content, settings of this model, seed and evaluation. */
/**
 * The config an experiment folder was run with (DIR/config.json, the parsed config written by runExperiment), for
 * rebuilding its reports. Checked for the fields the reports and run fingerprints read.
 */
export async function readStoredConfig(dir: string): Promise<ExperimentConfig> {
  const path = join(dir, 'config.json');
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new Error(`${path}: ${(error as Error).message} (is ${dir} a \`deltarec experiment\` folder?)`, {
      cause: error,
    });
  }
  let stored: Partial<ExperimentConfig>;
  try {
    stored = JSON.parse(text) as Partial<ExperimentConfig>;
  } catch (error) {
    throw new Error(`${path}: not valid JSON (${(error as Error).message})`, { cause: error });
  }
  const models = stored.models;
  if (
    typeof stored.name !== 'string' ||
    !Array.isArray(stored.seeds) ||
    !Array.isArray(models) ||
    !models.every((m) => typeof m?.name === 'string' && typeof m.strategy === 'string' && m.overrides) ||
    !Array.isArray(stored.evaluation?.ks) ||
    typeof stored.data !== 'object'
  ) {
    throw new Error(
      `${path}: not a config written by \`deltarec experiment\` (needs name, seeds, models, evaluation)`,
    );
  }
  return stored as ExperimentConfig;
}

function fingerprint(config: ExperimentConfig, entry: ModelEntry, seed: number): string {
  const settings = settingsOf(config, entry);
  const relevant = {
    data: config.data,
    content: entry.strategy === 'sasrec' && !settings.lexicalWeight ? null : config.content,
    strategy: entry.strategy,
    settings,
    evaluation: { ...config.evaluation, mode: entry.evaluation ?? null },
    seed,
  };
  return createHash('sha256').update(JSON.stringify(relevant)).digest('hex').slice(0, 16);
}

async function writeAtomic(path: string, text: string): Promise<void> {
  const temp = `${path}.tmp-${process.pid}`;
  await writeFile(temp, text);
  await rename(temp, path);
}

function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const s = Math.round(seconds);
  return s >= 3600
    ? `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`
    : s >= 60
      ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`
      : `${s}s`;
}

/** A stored run, or null when there is none; a run made with another configuration is an error. */
async function readRun(file: string, expected: string): Promise<RunRecord | null> {
  if (!existsSync(file)) return null;
  const record = JSON.parse(await readFile(file, 'utf8')) as RunRecord;
  if (record.fingerprint !== expected) {
    throw new Error(
      `${file} was produced with a different configuration; use another --out directory or delete that file to rerun it`,
    );
  }
  return record;
}

export interface ExperimentOptions {
  log?: (line: string) => void;
  signal?: AbortSignal;
  /** Directory that relative data paths in the config are resolved against. */
  baseDir: string;
  /** Run nothing: only rewrite the results from the runs stored so far. */
  reportOnly?: boolean;
}

export interface ExperimentOutcome {
  results: Aggregated;
  runs: RunRecord[];
  completed: boolean;
  ranRuns: number;
  skippedRuns: number;
  seconds: number;
}

/**
 * Runs with the same key train the same model: lexical fusion is applied after training (fusion.ts), and a model
 * 'auto' run trains the variant its backtest chose (its key is that variant's).
 */
function trainingKey(
  config: ExperimentConfig,
  entry: ModelEntry,
  seed: number,
  strategy = entry.strategy,
): string {
  return JSON.stringify({ strategy, settings: trainingSettings(settingsOf(config, entry)), seed });
}

/** An entry's settings without those applied after training or used only by the backtest choice. */
function trainingSettings<T extends Record<string, unknown>>(settings: T): T {
  const out = { ...settings };
  for (const key of ['lexicalWeight', 'lexicalColdWeight', 'lexicalLastWeight', 'lexicalGrid', 'autoModels'])
    delete out[key];
  return out;
}

/** An entry whose choices are made on a backtest of the training period (model or lexicalWeight 'auto'). */
function choosesOnBacktest(config: ExperimentConfig, entry: ModelEntry): boolean {
  return entry.strategy === 'auto' || settingsOf(config, entry).lexicalWeight === 'auto';
}

/** Runs (or resumes) the experiment into outDir. */
export async function runExperiment(
  config: ExperimentConfig,
  outDir: string,
  options: ExperimentOptions,
): Promise<ExperimentOutcome> {
  const log = options.log ?? ((line: string) => process.stderr.write(line + '\n'));
  const started = performance.now();
  const runsDir = join(outDir, 'runs');
  await mkdir(runsDir, { recursive: true });
  await writeAtomic(join(outDir, 'config.json'), JSON.stringify(config, null, 2) + '\n');

  // Seed-major order: an interrupted experiment has every model on its first seeds.
  const plan = config.seeds.flatMap((seed) => config.models.map((entry) => ({ entry, seed })));
  const runFile = (item: (typeof plan)[number]) => join(runsDir, `${item.entry.name}-seed${item.seed}.json`);
  const finished = async (): Promise<RunRecord[]> => {
    const out: RunRecord[] = [];
    for (const item of plan) {
      const record = await readRun(runFile(item), fingerprint(config, item.entry, item.seed));
      if (record) out.push(record);
    }
    return out;
  };
  const done = await finished();
  const todo = plan.filter((item) => !existsSync(runFile(item)));
  log(
    `experiment '${config.name}': ${plan.length} runs (${config.models.length} models x ${config.seeds.length} seeds), ${done.length} already done, ${todo.length} to run`,
  );

  let data: PreparedData | null = null;
  const notes: string[] = [];
  const timing = new Map<string, number[]>(); // strategy -> seconds of runs finished in this invocation
  let ranRuns = 0;
  // Trained models of the current seed, by training key (runs that differ only in lexicalWeight share one).
  const trainedModels = new Map<string, FittedModel>();
  let trainedSeed: number | null = null;
  let elsewhere = 0;
  const claimed = new Map<string, Lock>(); // run file -> lock on a later run this process claimed
  for (const [i, { entry, seed }] of todo.entries()) {
    if (options.signal?.aborted || options.reportOnly) break;
    const file = runFile({ entry, seed });
    // Another worker on the same directory may have finished or started this run meanwhile.
    if (existsSync(file)) continue;
    // A run is claimed with a lock file, so several processes can work on one output directory.
    const claim = claimed.get(file) ?? (await tryLock(`${file}.lock`));
    claimed.delete(file);
    if ('heldBy' in claim) {
      log(`[${i + 1}/${todo.length}] ${entry.name} seed ${seed}: running in another process, skipped`);
      elsewhere++;
      continue;
    }
    // Checked again under the lock: another process may have written the run and released its lock between the
    // check above and our claim (without this, a loaded machine trained one run twice).
    if (existsSync(file)) {
      await claim.release();
      continue;
    }
    // Claim the later runs that share this run's training too (they differ only in lexicalWeight), so that this
    // process, which will hold the trained model, is the one that evaluates them.
    let key = trainingKey(config, entry, seed);
    for (const later of todo.slice(i + 1)) {
      if (
        later.seed === seed &&
        trainingKey(config, later.entry, seed) === key &&
        !existsSync(runFile(later))
      ) {
        const laterLock = await tryLock(`${runFile(later)}.lock`);
        if (!('heldBy' in laterLock)) claimed.set(runFile(later), laterLock);
      }
    }
    try {
      if (!data) {
        const withBacktest = config.models.some((m) => choosesOnBacktest(config, m));
        data = await prepareData(config.data, config.content, options.baseDir, log, withBacktest);
        notes.push(...data.notes);
        await writeAtomic(join(outDir, 'data-notes.json'), JSON.stringify(notes) + '\n');
        await writeAtomic(join(outDir, 'split-stats.json'), JSON.stringify(data.split.stats, null, 1) + '\n');
        await writeAtomic(join(outDir, 'machine.json'), JSON.stringify(machine(), null, 1) + '\n');
      }
      const t0 = performance.now();
      const entrySettings = settingsOf(config, entry) as Partial<FitOptions>;
      const weightSetting = entrySettings.lexicalWeight;
      const settings = trainingSettings(entrySettings);
      if (weightSetting !== undefined && weightSetting !== 'auto' && typeof weightSetting !== 'number')
        throw new Error(`${entry.name}: lexicalWeight must be a number or 'auto'`);
      if (weightSetting !== undefined && weightSetting !== 0 && !data.lexical) {
        throw new Error(`${entry.name}: lexicalWeight needs sparse text rows (content encoder 'tfidf-svd')`);
      }
      const coldSetting = entrySettings.lexicalColdWeight;
      const lastSetting = entrySettings.lexicalLastWeight;
      for (const [key, v] of [
        ['lexicalColdWeight', coldSetting],
        ['lexicalLastWeight', lastSetting],
      ] as const) {
        if (v === undefined) continue;
        if (typeof v !== 'number' || !(v >= 0) || !Number.isFinite(v))
          throw new Error(`${entry.name}: ${key} must be a finite number >= 0`);
        if (typeof weightSetting !== 'number' || choosesOnBacktest(config, entry))
          throw new Error(
            `${entry.name}: ${key} needs a numeric lexicalWeight (not 'auto') and a named model`,
          );
        if (v > 0 && !data.lexical)
          throw new Error(`${entry.name}: ${key} needs sparse text rows (content encoder 'tfidf-svd')`);
      }
      const prefix = `[${i + 1}/${todo.length}] ${entry.name} seed ${seed}`;
      let choice: LexicalChoice | undefined;
      let strategy = entry.strategy;
      let lexicalWeight = typeof weightSetting === 'number' ? weightSetting : 0;
      if (choosesOnBacktest(config, entry)) {
        const backtest = data.backtest!;
        choice = await chooseOnBacktest({
          ...entrySettings,
          model: entry.strategy,
          seed,
          lexicalRows: data.lexical ?? undefined,
          lexicalBacktest: {
            split: backtest.split,
            content: backtest.content ?? undefined,
            lexicalRows: backtest.lexical!,
          },
          signal: options.signal,
          handleSigint: false,
          onProgress: (p) => log(`${prefix}: ${p.line}`),
        });
        if (options.signal?.aborted) {
          log(`${prefix}: interrupted; this run is not stored`);
          break;
        }
        log(`${prefix}: the backtest chose ${choice.model} with lexical weight ${choice.weight}`);
        strategy = choice.model;
        lexicalWeight = choice.weight;
        key = trainingKey(config, entry, seed, strategy);
      }
      let trained = trainedModels.get(key);
      const reused = trained !== undefined;
      if (trained) log(`${prefix}: reusing the model trained for an earlier run of this process`);
      else {
        log(`${prefix}: fitting`);
        trained = await fit(data.split, {
          ...settings,
          model: strategy,
          seed,
          content: data.content ?? undefined,
          signal: options.signal,
          handleSigint: false,
          onProgress: (p) => log(`${prefix}: ${p.line}`),
        });
        if (trained.training?.stopReason === 'aborted' || options.signal?.aborted) {
          log(`${prefix}: interrupted; this run is not stored`);
          break;
        }
        // Runs go seed by seed: models of earlier seeds are not needed again.
        if (seed !== trainedSeed) trainedModels.clear();
        trainedSeed = seed;
        trainedModels.set(key, trained);
      }
      const extra = { coldWeight: coldSetting ?? 0, lastWeight: lastSetting ?? 0 };
      const fused = lexicalWeight > 0 || extra.coldWeight > 0 || extra.lastWeight > 0;
      const model = fused ? withLexicalFusion(trained, data.lexical!, lexicalWeight, extra) : trained;
      const t1 = performance.now();
      const mode = entry.evaluation ?? {};
      const result = evaluate(model, data.split, { ...mode, ks: config.evaluation.ks });
      const modes: RunRecord['modes'] = {};
      if (config.evaluation.allModes && entry.strategy !== 'sasrec') {
        for (const recommendColdItems of [true, false]) {
          for (const filterColdInputs of [false, true]) {
            const r = evaluate(model, data.split, {
              recommendColdItems,
              filterColdInputs,
              ks: config.evaluation.ks,
            });
            modes[`recommendCold=${recommendColdItems},filterCold=${filterColdInputs}`] = {
              cold: r.cold,
              warm: r.warm,
              all: r.all,
            };
          }
        }
      }
      const t2 = performance.now();
      const record: RunRecord = {
        model: entry.name,
        strategy: entry.strategy,
        seed,
        fingerprint: fingerprint(config, entry, seed),
        metrics: { cold: result.cold, warm: result.warm, all: result.all },
        modes: config.evaluation.allModes ? modes : undefined,
        analyses: analyzeCases(result.ranks, data.split, model.maxLength),
        emptyInputs: result.emptyInputs,
        training: model.training
          ? {
              epochs: model.training.history.length,
              bestEpoch: model.training.bestEpoch,
              bestMetric: model.training.bestMetric,
              stopReason: model.training.stopReason,
            }
          : null,
        fitSeconds: model.fitSeconds,
        reusedTraining: reused || undefined,
        choice,
        evalSeconds: (t2 - t1) / 1000,
        finishedAt: new Date().toISOString(),
      };
      await writeAtomic(
        join(runsDir, `${entry.name}-seed${seed}.json`),
        JSON.stringify(record, null, 1) + '\n',
      );
      ranRuns++;
      const seconds = (t2 - t0) / 1000;
      timing.set(entry.strategy, [...(timing.get(entry.strategy) ?? []), seconds]);
      const all = [...timing.values()].flat();
      const fallback = all.reduce((a, b) => a + b, 0) / all.length;
      const eta = todo.slice(i + 1).reduce((sum, r) => {
        const mine = timing.get(r.entry.strategy);
        return sum + (mine ? mine.reduce((a, b) => a + b, 0) / mine.length : fallback);
      }, 0);
      const m = record.metrics;
      log(
        `${prefix}: ndcg@10 cold ${m.cold['ndcg@10']?.toFixed(4)} warm ${m.warm['ndcg@10']?.toFixed(4)} all ${m.all['ndcg@10']?.toFixed(4)}` +
          ` (${formatDuration(seconds)}${record.training ? `, best epoch ${record.training.bestEpoch}` : ''}); ` +
          `${todo.length - i - 1} runs left, ETA ${formatDuration(eta)}`,
      );
    } finally {
      await claim.release();
    }
  }
  for (const lock of claimed.values()) await lock.release(); // claims of runs not reached (interrupted)

  const order = config.models.map((m) => m.name);
  const runs = await finished();
  const results = aggregate(runs, order);
  if (notes.length === 0 && existsSync(join(outDir, 'data-notes.json'))) {
    notes.push(...(JSON.parse(await readFile(join(outDir, 'data-notes.json'), 'utf8')) as string[]));
  }
  await writeReports(config, outDir, runs, results, notes);
  const completed = runs.length === plan.length;
  if (elsewhere > 0 && !completed) {
    log(
      `${elsewhere} runs were running in other processes; run the command again after they finish for the full results`,
    );
  }
  if (completed) log(resultsText(results));
  return {
    results,
    runs,
    completed,
    ranRuns,
    skippedRuns: plan.length - todo.length,
    seconds: (performance.now() - started) / 1000,
  };
}

/** The machine this process runs on, for the report (the runs' times depend on it). */
function machine(): Record<string, unknown> {
  const cores = cpus();
  return {
    cpu: cores[0]?.model ?? 'unknown',
    cores: cores.length,
    memory_gib: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    os: `${platform()} ${release()} ${arch()}`,
    node: process.version,
    kernels: kernels === referenceKernels ? 'TypeScript reference' : 'native addon',
    kernel_threads: process.env.DELTAREC_THREADS ?? 'default',
    recorded_at: new Date().toISOString(),
  };
}

async function readJsonIfAny(path: string): Promise<Record<string, unknown> | null> {
  return existsSync(path) ? (JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>) : null;
}

async function writeReports(
  config: ExperimentConfig,
  outDir: string,
  runs: RunRecord[],
  results: Aggregated,
  notes: string[],
): Promise<void> {
  const order = config.models.map((m) => m.name);
  const k = config.evaluation.ks.includes(10) ? 10 : config.evaluation.ks[0];
  await writeAtomic(join(outDir, 'results.json'), JSON.stringify(results, null, 2) + '\n');
  const totalFit = runs.reduce((s, r) => s + (r.reusedTraining ? 0 : r.fitSeconds) + r.evalSeconds, 0);
  const md = resultsMarkdown(config.name, results, runs, k, [
    `${runs.length} runs; total fit + evaluation time ${formatDuration(totalFit)}`,
    'SASRec (ID) is evaluated without cold candidates and with cold items dropped from inputs (PROTOCOL.md); content models rank the whole catalog.',
    ...notes,
  ]);
  await writeAtomic(join(outDir, 'results.md'), md);
  const analyses: Record<string, unknown> = {};
  for (const name of order) {
    const mine = runs.filter((r) => r.model === name);
    if (mine.length) analyses[name] = mine.map((r) => ({ seed: r.seed, ...r.analyses }));
  }
  await writeAtomic(join(outDir, 'analyses.json'), JSON.stringify(analyses, null, 1) + '\n');
  const sweepModels = new Set<string>();
  const plots: Record<string, string> = {};
  const tables: { heading: string; rows: string[][] }[] = [];
  if (config.sweep) {
    const s = config.sweep;
    const points = s.values.map((v) => ({ label: String(v), model: sweepModelName(s, v) }));
    if (s.unbounded) points.push({ label: `∞ (${s.unbounded})`, model: s.unbounded });
    points.forEach((p) => p.model !== s.unbounded && sweepModels.add(p.model));
    plots[`ndcg-vs-${s.param}.svg`] = sweepPlot(results, points, k);
    const cells = points.map((p) => {
      const r = results[p.model];
      const cell = (seg: (typeof SEGMENTS)[number]) =>
        r ? `${r[seg][`ndcg@${k}`].mean.toFixed(4)} ± ${r[seg][`ndcg@${k}`].std.toFixed(4)}` : '-';
      return [p.label, cell('cold'), cell('warm'), cell('all')];
    });
    const header = [s.param, `cold NDCG@${k}`, `warm NDCG@${k}`, `all NDCG@${k}`];
    tables.push({ heading: `${s.param} sweep (${s.base})`, rows: [header, ...cells] });
    await writeAtomic(
      join(outDir, 'results.md'),
      md +
        `\n## ${s.param} sweep (${s.base})\n\n| ${header.join(' | ')} |\n| --- | --- | --- | --- |\n${cells.map((c) => `| ${c.join(' | ')} |`).join('\n')}\n\nPlot: ndcg-vs-${s.param}.svg\n`,
    );
  }
  Object.assign(plots, analysisPlots(runs, order, sweepModels));
  for (const [file, svg] of Object.entries(plots)) {
    await mkdir(dirname(join(outDir, file)), { recursive: true });
    await writeAtomic(join(outDir, file), svg);
  }
  const html = resultsHtml({
    title: config.name,
    results,
    runs,
    k,
    notes: [`${runs.length} runs; total fit + evaluation time ${formatDuration(totalFit)}`, ...notes],
    config,
    splitStats: await readJsonIfAny(join(outDir, 'split-stats.json')),
    machine: await readJsonIfAny(join(outDir, 'machine.json')),
    tables,
    plots,
  });
  await writeAtomic(join(outDir, 'report.html'), html);
}
