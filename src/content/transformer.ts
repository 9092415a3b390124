/**
 * Local transformer text encoders (E5, BGE, GTE, MiniLM and similar) run from a model directory on disk through
 * `@huggingface/transformers` (an optional peer dependency, imported only here), with remote loading disabled:
 * nothing is ever downloaded.
 *
 * The directory needs config.json, tokenizer.json + tokenizer_config.json and onnx/model.onnx (the layout of the
 * Hugging Face ONNX exports) whose output is last_hidden_state. Each family's conventions apply:
 * - E5: "passage: " prefix for items ("query: " for queries), mean pooling;
 * - BGE: CLS pooling, no prefix for passages (its instruction prefix is only for queries);
 * - anything else: mean pooling, no prefix (override with options).
 * Vectors are L2-normalized. Texts are encoded in batches with progress, and an optional on-disk cache keyed by
 * model + settings + text hash makes every vector computed once.
 */
import { createHash } from 'node:crypto';
import { appendFile, mkdir, readFile, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { importOptional } from '../util/optional.js';

export type Pooling = 'mean' | 'cls';
export type ModelFamily = 'e5' | 'bge' | 'other';

export interface TransformerOptions {
  pooling?: Pooling;
  /** Text prepended to every item text; default from the family ('passage: ' for E5). */
  prefix?: string;
  /** 'passage' (items, default) or 'query' (user text): selects the family's prefix. */
  role?: 'passage' | 'query';
  family?: ModelFamily;
  batchSize?: number;
  /** Token limit per text (default: the tokenizer's model_max_length, at most 512). */
  maxTokens?: number;
  /** Directory for the vector cache; null/undefined disables it. */
  cacheDir?: string | null;
  onProgress?: (done: number, total: number) => void;
}

const REQUIRED_FILES = ['config.json', 'tokenizer.json', 'tokenizer_config.json', join('onnx', 'model.onnx')];

/** Guesses the family from the directory name and config (_name_or_path). */
export function detectFamily(dir: string, config: Record<string, unknown>): ModelFamily {
  const name = `${basename(resolve(dir))} ${String(config._name_or_path ?? '')}`.toLowerCase();
  if (/(^|[^a-z])e5([^a-z]|$)/.test(name) || name.includes('multilingual-e5')) return 'e5';
  if (name.includes('bge')) return 'bge';
  return 'other';
}

function familyDefaults(
  family: ModelFamily,
  role: 'passage' | 'query',
): { pooling: Pooling; prefix: string } {
  if (family === 'e5') return { pooling: 'mean', prefix: role === 'query' ? 'query: ' : 'passage: ' };
  if (family === 'bge')
    return {
      pooling: 'cls',
      prefix: role === 'query' ? 'Represent this sentence for searching relevant passages: ' : '',
    };
  return { pooling: 'mean', prefix: '' };
}

/** Checks the model directory, naming every missing file. */
export async function checkModelDirectory(dir: string): Promise<void> {
  const missing: string[] = [];
  for (const file of REQUIRED_FILES) {
    try {
      await stat(join(dir, file));
    } catch {
      missing.push(file);
    }
  }
  if (missing.length > 0)
    throw new Error(
      `local model directory ${dir} is incomplete: missing ${missing.join(', ')} ` +
        `(expected config.json, tokenizer.json, tokenizer_config.json and onnx/model.onnx, as in a Hugging Face ONNX export)`,
    );
}

type Tensor = { data: ArrayLike<number | bigint>; dims: number[] };
type Tokenizer = (texts: string[], options: Record<string, unknown>) => Record<string, Tensor>;
type Model = (inputs: Record<string, Tensor>) => Promise<Record<string, Tensor>>;

export class LocalTransformerEncoder {
  private constructor(
    readonly dir: string,
    readonly family: ModelFamily,
    readonly pooling: Pooling,
    readonly prefix: string,
    readonly dim: number,
    readonly maxTokens: number,
    private readonly tokenizer: Tokenizer,
    private readonly model: Model,
    private readonly modelKey: string,
  ) {}

  static async load(dir: string, options: TransformerOptions = {}): Promise<LocalTransformerEncoder> {
    const root = resolve(dir);
    await checkModelDirectory(root);
    const config = JSON.parse(await readFile(join(root, 'config.json'), 'utf8')) as Record<string, unknown>;
    const tokenizerConfig = JSON.parse(await readFile(join(root, 'tokenizer_config.json'), 'utf8'));
    const family = options.family ?? detectFamily(root, config);
    const defaults = familyDefaults(family, options.role ?? 'passage');
    const pooling = options.pooling ?? defaults.pooling;
    const prefix = options.prefix ?? defaults.prefix;
    const dim = Number(config.hidden_size ?? config.d_model ?? config.dim);
    if (!(dim > 0))
      throw new Error(`${join(root, 'config.json')}: no hidden_size, cannot tell the output dimension`);
    const maxTokens = options.maxTokens ?? Math.min(Number(tokenizerConfig.model_max_length) || 512, 512);

    const transformers = await importOptional(
      '@huggingface/transformers',
      'the local transformer encoder (--encoder local:DIR)',
      () => import('@huggingface/transformers'),
    );
    transformers.env.allowRemoteModels = false;
    transformers.env.allowLocalModels = true;
    transformers.env.localModelPath = dirname(root) + '/';
    const name = basename(root);
    let tokenizer: Tokenizer;
    let model: Model;
    try {
      tokenizer = (await transformers.AutoTokenizer.from_pretrained(name, {
        local_files_only: true,
      })) as unknown as Tokenizer;
      model = (await transformers.AutoModel.from_pretrained(name, {
        local_files_only: true,
        dtype: 'fp32',
      })) as unknown as Model;
    } catch (error) {
      throw new Error(`cannot load the local model in ${root}: ${(error as Error).message}`, {
        cause: error,
      });
    }
    const onnx = await stat(join(root, 'onnx', 'model.onnx'));
    const modelKey = sha256(JSON.stringify([root, onnx.size, onnx.mtimeMs, pooling, prefix, maxTokens]));
    return new LocalTransformerEncoder(
      root,
      family,
      pooling,
      prefix,
      dim,
      maxTokens,
      tokenizer,
      model,
      modelKey,
    );
  }

  describe(): Record<string, unknown> & { kind: string } {
    return {
      kind: 'transformer',
      model: this.dir,
      family: this.family,
      pooling: this.pooling,
      prefix: this.prefix,
      dim: this.dim,
    };
  }

  /** texts.length x dim unit-norm vectors, row-major (a text with no tokens but specials still gets a vector). */
  async encode(
    texts: readonly string[],
    options: Pick<TransformerOptions, 'batchSize' | 'cacheDir' | 'onProgress'> = {},
  ): Promise<Float32Array> {
    const batchSize = options.batchSize ?? 32;
    const out = new Float32Array(texts.length * this.dim);
    const cache = options.cacheDir ? await VectorCache.open(options.cacheDir, this.modelKey, this.dim) : null;
    const todo: number[] = [];
    const keys = texts.map((t) => sha256(this.prefix + t));
    for (let i = 0; i < texts.length; i++) {
      const hit = cache?.get(keys[i]);
      if (hit) out.set(hit, i * this.dim);
      else todo.push(i);
    }
    let done = texts.length - todo.length;
    options.onProgress?.(done, texts.length);
    for (let start = 0; start < todo.length; start += batchSize) {
      const batch = todo.slice(start, start + batchSize);
      const vectors = await this.encodeBatch(batch.map((i) => this.prefix + texts[i]));
      batch.forEach((i, b) => out.set(vectors.subarray(b * this.dim, (b + 1) * this.dim), i * this.dim));
      if (cache)
        await cache.add(
          batch.map((i) => keys[i]),
          vectors,
        );
      done += batch.length;
      options.onProgress?.(done, texts.length);
    }
    return out;
  }

  private async encodeBatch(texts: string[]): Promise<Float32Array> {
    const inputs = this.tokenizer(texts, { padding: true, truncation: true, max_length: this.maxTokens });
    const { last_hidden_state: hidden } = await this.model(inputs);
    if (!hidden) throw new Error(`${this.dir}: the ONNX model has no 'last_hidden_state' output`);
    return poolAndNormalize(
      hidden.data as Float32Array,
      inputs.attention_mask.data,
      hidden.dims[0],
      hidden.dims[1],
      hidden.dims[2],
      this.pooling,
    );
  }
}

/**
 * Pools a (batch x tokens x dim) hidden state: mean over positions with mask 1, or the first (CLS) position; then
 * L2-normalizes each row.
 */
export function poolAndNormalize(
  hidden: ArrayLike<number>,
  mask: ArrayLike<number | bigint>,
  batch: number,
  tokens: number,
  dim: number,
  pooling: Pooling,
): Float32Array {
  const out = new Float32Array(batch * dim);
  const row = new Float64Array(dim);
  for (let b = 0; b < batch; b++) {
    row.fill(0);
    if (pooling === 'cls') {
      for (let j = 0; j < dim; j++) row[j] = hidden[b * tokens * dim + j];
    } else {
      let count = 0;
      for (let t = 0; t < tokens; t++) {
        if (Number(mask[b * tokens + t]) === 0) continue;
        count++;
        const at = (b * tokens + t) * dim;
        for (let j = 0; j < dim; j++) row[j] += hidden[at + j];
      }
      for (let j = 0; j < dim; j++) row[j] /= Math.max(count, 1);
    }
    let norm = 0;
    for (let j = 0; j < dim; j++) norm += row[j] * row[j];
    const inv = norm > 0 ? 1 / Math.sqrt(norm) : 0;
    for (let j = 0; j < dim; j++) out[b * dim + j] = row[j] * inv;
  }
  return out;
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** Append-only cache file per model key: records of [32-byte text hash][dim float32]. */
class VectorCache {
  private constructor(
    private readonly path: string,
    private readonly dim: number,
    private readonly entries: Map<string, Float32Array>,
  ) {}

  static async open(dir: string, modelKey: string, dim: number): Promise<VectorCache> {
    await mkdir(dir, { recursive: true });
    const path = join(dir, `${modelKey.slice(0, 24)}.vectors`);
    const entries = new Map<string, Float32Array>();
    let bytes: Buffer | null = null;
    try {
      bytes = await readFile(path);
    } catch {
      // no cache yet
    }
    const record = 32 + 4 * dim;
    if (bytes) {
      // A torn last record (interrupted write) is ignored.
      for (let at = 0; at + record <= bytes.length; at += record) {
        const vector = new Float32Array(dim);
        new Uint8Array(vector.buffer).set(bytes.subarray(at + 32, at + record));
        entries.set(bytes.subarray(at, at + 32).toString('hex'), vector);
      }
    }
    return new VectorCache(path, dim, entries);
  }

  get(key: string): Float32Array | undefined {
    return this.entries.get(key);
  }

  async add(keys: string[], vectors: Float32Array): Promise<void> {
    const record = 32 + 4 * this.dim;
    const buffer = Buffer.alloc(keys.length * record);
    keys.forEach((key, i) => {
      const vector = vectors.subarray(i * this.dim, (i + 1) * this.dim);
      Buffer.from(key, 'hex').copy(buffer, i * record);
      Buffer.from(vector.buffer, vector.byteOffset, vector.byteLength).copy(buffer, i * record + 32);
      this.entries.set(key, vector.slice());
    });
    await appendFile(this.path, buffer);
  }
}
