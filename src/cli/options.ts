/** Option parsing shared by the deltarec commands. */

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
  --no-standardize   skip the per-component standardization before PCA`;

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
  };
  if (out.activation !== undefined && out.activation !== 'relu' && out.activation !== 'gelu') {
    throw new Error(`--activation must be relu or gelu (got '${String(out.activation)}')`);
  }
  for (const k of Object.keys(out)) if (out[k] === undefined) delete out[k];
  return out;
}
