/** Option parsing shared by the deltarec commands. */
import { LOSS_KINDS, SAMPLER_KINDS } from '../model/sasrec.js';

export function intOption(value: string | undefined, name: string, min = 0): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min)
    throw new Error(`--${name} must be an integer >= ${min} (got '${value}')`);
  return n;
}

export function floatOption(value: string | undefined, name: string, min = 0): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n) || n < min)
    throw new Error(`--${name} must be a number >= ${min} (got '${value}')`);
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

/** The SASRec and training options every model-fitting command accepts. */
export const MODEL_ARGS = {
  d: { type: 'string' },
  blocks: { type: 'string' },
  heads: { type: 'string' },
  dropout: { type: 'string' },
  'max-length': { type: 'string' },
  'delta-max': { type: 'string' },
  activation: { type: 'string' },
  epochs: { type: 'string' },
  patience: { type: 'string' },
  'batch-size': { type: 'string' },
  lr: { type: 'string' },
  seed: { type: 'string' },
  'no-standardize': { type: 'boolean' },
  loss: { type: 'string' },
  negatives: { type: 'string' },
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
  --negatives K      negatives per batch for sampled / gbce (256)
  --sampler S        uniform | popularity (uniform); popularity draws by training frequency^power, logQ-corrected
  --sampler-power P  exponent of the popularity sampler (1)
  --gbce-t T         gBCE calibration t in [0, 1] (0.75)`;

export function modelSettings(values: Record<string, string | boolean | undefined>): Record<string, unknown> {
  const s = (k: string) => values[k] as string | undefined;
  const out: Record<string, unknown> = {
    d: intOption(s('d'), 'd', 1),
    blocks: intOption(s('blocks'), 'blocks', 1),
    heads: intOption(s('heads'), 'heads', 1),
    dropout: floatOption(s('dropout'), 'dropout'),
    maxLength: intOption(s('max-length'), 'max-length', 1),
    deltaMax: floatOption(s('delta-max'), 'delta-max'),
    activation: s('activation'),
    epochs: intOption(s('epochs'), 'epochs', 1),
    patience: intOption(s('patience'), 'patience', 1),
    batchSize: intOption(s('batch-size'), 'batch-size', 1),
    lr: floatOption(s('lr'), 'lr'),
    seed: intOption(s('seed'), 'seed'),
    standardize: values['no-standardize'] ? false : undefined,
    loss: s('loss'),
    negatives: intOption(s('negatives'), 'negatives', 1),
    sampler: s('sampler'),
    samplerPower: floatOption(s('sampler-power'), 'sampler-power'),
    gbceT: floatOption(s('gbce-t'), 'gbce-t'),
  };
  if (out.loss !== undefined && !(LOSS_KINDS as readonly unknown[]).includes(out.loss)) {
    throw new Error(`--loss must be one of ${LOSS_KINDS.join(', ')} (got '${String(out.loss)}')`);
  }
  if (out.sampler !== undefined && !(SAMPLER_KINDS as readonly unknown[]).includes(out.sampler)) {
    throw new Error(`--sampler must be one of ${SAMPLER_KINDS.join(', ')} (got '${String(out.sampler)}')`);
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
