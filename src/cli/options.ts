/** Option parsing shared by the deltarec commands. */
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ANALYZERS, type Analyzer } from '../content/tfidf.js';
import { LOSS_KINDS, NEGATIVES_PER, SAMPLER_KINDS } from '../model/sasrec.js';

/**
 * The arguments with every negative number that follows an option joined to it (`--lr -1` -> `--lr=-1`), so that
 * node:util parseArgs hands it to our range checks instead of calling it an ambiguous option.
 */
export function withNegativeNumbers(args: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const next = args[i + 1];
    if (/^--[^=]+$/.test(args[i]) && next !== undefined && /^-(\d|\.\d|Infinity)/.test(next)) {
      out.push(`${args[i]}=${next}`);
      i++;
    } else out.push(args[i]);
  }
  return out;
}

export function intOption(value: string | undefined, name: string, min = 0): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim() === '' || !Number.isInteger(n) || n < min)
    throw new Error(`--${name} must be an integer >= ${min} (got '${value}')`);
  return n;
}

/** A finite number >= min (> min when `above`). */
export function floatOption(
  value: string | undefined,
  name: string,
  min = 0,
  above = false,
): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < min || (above && n === min))
    throw new Error(`--${name} must be a number ${above ? '>' : '>='} ${min} (got '${value}')`);
  return n;
}

/** 'on' or 'off' as a boolean. */
export function onOff(value: string | undefined, name: string): boolean | undefined {
  if (value === undefined) return undefined;
  if (value !== 'on' && value !== 'off') throw new Error(`--${name} must be on or off (got '${value}')`);
  return value === 'on';
}

/** A number in [0, 1). */
export function fractionOption(value: string | undefined, name: string): number | undefined {
  const n = floatOption(value, name);
  if (n !== undefined && n >= 1) throw new Error(`--${name} must be a number in [0, 1) (got '${value}')`);
  return n;
}

export function listOption(value: string | undefined): string[] | undefined {
  return value === undefined
    ? undefined
    : value
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean);
}

/**
 * --analyzer and --lexical-analyzer (undefined where not given); `invalid` is the first given that is not one of
 * ANALYZERS, for the command to refuse in its own words.
 */
export function analyzerOptions(values: { analyzer?: string; 'lexical-analyzer'?: string }): {
  analyzer: Analyzer | undefined;
  lexicalAnalyzer: Analyzer | undefined;
  invalid?: { name: string; value: string };
} {
  const analyzer = values.analyzer as Analyzer | undefined;
  const lexicalAnalyzer = values['lexical-analyzer'] as Analyzer | undefined;
  for (const [name, value] of [
    ['analyzer', analyzer],
    ['lexical-analyzer', lexicalAnalyzer],
  ] as const)
    if (value !== undefined && !ANALYZERS.includes(value))
      return { analyzer, lexicalAnalyzer, invalid: { name, value } };
  return { analyzer, lexicalAnalyzer };
}

/** The SASRec and training options every model-fitting command accepts. */
export const MODEL_ARGS = {
  d: { type: 'string' },
  blocks: { type: 'string' },
  heads: { type: 'string' },
  dropout: { type: 'string' },
  'max-length': { type: 'string' },
  'delta-max': { type: 'string' },
  'borrow-deltas': { type: 'string' },
  activation: { type: 'string' },
  epochs: { type: 'string' },
  patience: { type: 'string' },
  'batch-size': { type: 'string' },
  lr: { type: 'string' },
  seed: { type: 'string' },
  'no-standardize': { type: 'boolean' },
  loss: { type: 'string' },
  negatives: { type: 'string' },
  'negatives-per': { type: 'string' },
  sampler: { type: 'string' },
  'sampler-power': { type: 'string' },
  'gbce-t': { type: 'string' },
} as const;

export const MODEL_ARGS_HELP = `model and training options (defaults: the paper's):
  --d N              model dimension (128)
  --blocks N         transformer blocks (2)
  --heads N          attention heads (1)
  --dropout P        dropout (0.3)
  --max-length N     input length (64)
  --delta-max X      delta norm bound, content-delta (0.5)
  --borrow-deltas K  cold items (the split's and items added later, also in \`deltarec serve\`) get the
                     similarity-weighted mean of their K nearest warm items' deltas by content cosine, clipped to
                     --delta-max, instead of a zero delta (content-delta, content-map; default 0: off, the paper;
                     docs/cold-start.md)
  --activation A     relu | gelu (relu)
  --epochs N         most epochs (200; early stopping on validation NDCG@10)
  --patience N       epochs without improvement before stopping (5)
  --batch-size N     (128)
  --lr X             Adam learning rate (0.001)
  --seed N           model seed (0)
  --no-standardize   skip the per-component standardization before PCA
  --loss L           full | sampled | gbce (full): sampled softmax and gSASRec's gBCE train on --negatives items
                     per batch with lazy item updates, so a step costs the same for any catalog size
                     (docs/large-catalogs.md)
  --negatives K      negatives per batch (or per sequence) for sampled / gbce (256)
  --negatives-per P  batch | sequence (batch): one draw of K negatives shared by the whole batch, or one per
                     sequence (same cost per step, batch-size times more item rows learn from negatives)
  --sampler S        uniform | popularity (uniform); popularity draws by training frequency^power, logQ-corrected
  --sampler-power P  exponent of the popularity sampler (1)
  --gbce-t T         gBCE calibration t in [0, 1] (0.75)`;

export function modelSettings(values: Record<string, string | boolean | undefined>): Record<string, unknown> {
  const s = (k: string) => values[k] as string | undefined;
  const out: Record<string, unknown> = {
    d: intOption(s('d'), 'd', 1),
    blocks: intOption(s('blocks'), 'blocks', 1),
    heads: intOption(s('heads'), 'heads', 1),
    dropout: fractionOption(s('dropout'), 'dropout'),
    maxLength: intOption(s('max-length'), 'max-length', 1),
    deltaMax: floatOption(s('delta-max'), 'delta-max', 0, true),
    borrowDeltas: intOption(s('borrow-deltas'), 'borrow-deltas', 0),
    activation: s('activation'),
    epochs: intOption(s('epochs'), 'epochs', 1),
    patience: intOption(s('patience'), 'patience', 1),
    batchSize: intOption(s('batch-size'), 'batch-size', 1),
    lr: floatOption(s('lr'), 'lr', 0, true),
    seed: intOption(s('seed'), 'seed'),
    standardize: values['no-standardize'] ? false : undefined,
    loss: s('loss'),
    negatives: intOption(s('negatives'), 'negatives', 1),
    negativesPer: s('negatives-per'),
    sampler: s('sampler'),
    samplerPower: floatOption(s('sampler-power'), 'sampler-power'),
    gbceT: floatOption(s('gbce-t'), 'gbce-t'),
  };
  const d = (out.d as number | undefined) ?? 128;
  const heads = (out.heads as number | undefined) ?? 1;
  if (d % heads !== 0) throw new Error(`--d ${d} is not divisible by --heads ${heads}`);
  if (out.loss !== undefined && !(LOSS_KINDS as readonly unknown[]).includes(out.loss)) {
    throw new Error(`--loss must be one of ${LOSS_KINDS.join(', ')} (got '${String(out.loss)}')`);
  }
  if (out.sampler !== undefined && !(SAMPLER_KINDS as readonly unknown[]).includes(out.sampler)) {
    throw new Error(`--sampler must be one of ${SAMPLER_KINDS.join(', ')} (got '${String(out.sampler)}')`);
  }
  if (out.negativesPer !== undefined && !(NEGATIVES_PER as readonly unknown[]).includes(out.negativesPer)) {
    throw new Error(
      `--negatives-per must be one of ${NEGATIVES_PER.join(', ')} (got '${String(out.negativesPer)}')`,
    );
  }
  if (out.gbceT !== undefined && (out.gbceT as number) > 1) {
    throw new Error(`--gbce-t must be in [0, 1] (got '${s('gbce-t')}')`);
  }
  if (out.activation !== undefined && out.activation !== 'relu' && out.activation !== 'gelu') {
    throw new Error(`--activation must be relu or gelu (got '${String(out.activation)}')`);
  }
  for (const k of Object.keys(out)) if (out[k] === undefined) delete out[k];
  return out;
}

/** The files a model directory written by `deltarec train` (saveModel) holds. */
const MODEL_ENTRIES = new Set(['manifest.json', 'model.safetensors', 'encoder', 'projection', 'lexical']);

/**
 * Refuses an output directory that a new model would replace but that holds something else: anything that is not
 * a deltarec model (a split, content vectors, other files), or a model next to a service's catalog log or lock
 * (`deltarec serve` keeps the items added through it there). A missing or empty directory is fine; `force` skips the
 * check.
 */
export async function checkModelOutput(dir: string, force = false): Promise<void> {
  if (force) return;
  const info = await stat(dir).catch(() => null);
  if (!info) return;
  if (!info.isDirectory())
    throw new Error(`--out ${dir}: refusing to replace a file that is not a model directory`);
  const entries = (await readdir(dir)).sort();
  if (entries.length === 0) return;
  const manifest = await readFile(join(dir, 'manifest.json'), 'utf8')
    .then((text) => JSON.parse(text) as { format?: unknown })
    .catch(() => null);
  const isModel = manifest?.format === 'deltarec-model';
  const list = (names: string[]) =>
    names.slice(0, 5).join(', ') + (names.length > 5 ? ` and ${names.length - 5} more` : '');
  if (!isModel) {
    const what =
      manifest?.format === 'deltarec-split'
        ? 'a prepared split'
        : entries.includes('content.json')
          ? 'content vectors'
          : `${list(entries)}`;
    throw new Error(
      `--out ${dir}: refusing to replace a directory that is not a deltarec model (it holds ${what}); ` +
        `choose a new directory, or use --force to replace it`,
    );
  }
  const foreign = entries.filter((name) => !MODEL_ENTRIES.has(name));
  if (foreign.length > 0) {
    throw new Error(
      `--out ${dir}: refusing to replace a model directory that also holds ${list(foreign)}` +
        (foreign.some((name) => name.startsWith('catalog.log'))
          ? ' (the catalog of a service serving this model: items added through it would be lost)'
          : '') +
        `; stop the service and move those files, choose a new directory, or use --force to replace it`,
    );
  }
}
