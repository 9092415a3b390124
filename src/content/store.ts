/**
 * The content directory written by `deltarec embed` and read by training and the service (docs/content-format.md):
 *
 *   content.json   format, count, dim, encoder description, file names
 *   ids.txt        one item id per line, row order of the matrix
 *   vectors.f32    count x dim float32, little-endian, row-major
 *   encoder/       the fitted encoder state when there is one (tfidf-svd), so new items are encoded identically
 *   sparse.*       optional: the TF-IDF rows themselves (CSR: indptr int32, indices int32, values float32)
 */
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { writeDirectoryAtomically } from '../data/store.js';
import type { CsrMatrix } from './sparse.js';
import { float32Bytes, readFloat32, TfidfSvdEncoder } from './tfidf.js';
import { readVectors } from './vectors.js';

export const CONTENT_FORMAT = 'deltarec-content';

export interface ContentVectors {
  ids: string[];
  dim: number;
  /** ids.length x dim, row-major. */
  vectors: Float32Array;
  /** What produced the vectors, e.g. { kind: 'tfidf-svd', fields: ['title'] } or { kind: 'vectors', source }. */
  encoder: Record<string, unknown> & { kind: string };
  /** Sparse TF-IDF rows in the same row order, when saved. */
  sparse?: CsrMatrix;
}

export interface LoadedContent extends ContentVectors {
  dir: string;
  /** Directory of the saved encoder state, or null. */
  encoderDir: string | null;
}

/** Writes a content directory atomically (a failed write leaves no partial directory). */
export async function saveContent(
  dir: string,
  content: ContentVectors,
  encoderState?: TfidfSvdEncoder | null,
): Promise<void> {
  const { ids, dim, vectors } = content;
  if (vectors.length !== ids.length * dim)
    throw new Error(`saveContent: ${vectors.length} values are not ${ids.length} ids x ${dim}`);
  const seen = new Set<string>();
  for (const id of ids) {
    if (/[\n\r]/.test(id))
      throw new Error(`saveContent: item id ${JSON.stringify(id)} contains a line break`);
    if (seen.has(id)) throw new Error(`saveContent: duplicate item id '${id}'`);
    seen.add(id);
  }
  await writeDirectoryAtomically(
    dir,
    async (tmp) => {
      await writeFile(join(tmp, 'ids.txt'), ids.join('\n') + '\n');
      await writeFile(join(tmp, 'vectors.f32'), float32Bytes(vectors));
      let sparse = null;
      if (content.sparse) {
        const s = content.sparse;
        if (s.rows !== ids.length)
          throw new Error(`saveContent: sparse matrix has ${s.rows} rows for ${ids.length} ids`);
        await writeFile(
          join(tmp, 'sparse.indptr.i32'),
          new Uint8Array(s.indptr.buffer, s.indptr.byteOffset, s.indptr.byteLength),
        );
        await writeFile(
          join(tmp, 'sparse.indices.i32'),
          new Uint8Array(s.indices.buffer, s.indices.byteOffset, s.indices.byteLength),
        );
        await writeFile(join(tmp, 'sparse.values.f32'), float32Bytes(s.values));
        sparse = {
          cols: s.cols,
          nnz: s.values.length,
          indptr: 'sparse.indptr.i32',
          indices: 'sparse.indices.i32',
          values: 'sparse.values.f32',
        };
      }
      if (encoderState) {
        await mkdir(join(tmp, 'encoder'));
        await encoderState.save(join(tmp, 'encoder'));
      }
      const manifest = {
        format: CONTENT_FORMAT,
        version: 1,
        count: ids.length,
        dim,
        dtype: 'float32',
        ids: 'ids.txt',
        vectors: 'vectors.f32',
        encoder: content.encoder,
        encoder_state: encoderState ? 'encoder' : null,
        sparse,
        created_at: new Date().toISOString(),
      };
      await writeFile(join(tmp, 'content.json'), JSON.stringify(manifest, null, 1) + '\n');
    },
    isContentDirectory,
  );
}

/** An output path may be replaced when it is missing, empty, or an older content directory. */
async function isContentDirectory(dir: string): Promise<boolean> {
  try {
    const entries = await readdir(dir);
    return entries.length === 0 || entries.includes('content.json');
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ENOENT';
  }
}

/**
 * Reads a content directory written by saveContent (or `deltarec embed`); a path to a vector file (.npy, CSV/TSV,
 * JSON Lines, Parquet; see readVectors) is read directly.
 */
export async function loadContent(dir: string): Promise<LoadedContent> {
  if ((await stat(dir)).isFile()) {
    const content = await readVectors(dir);
    return { ...content, dir: dirname(dir), encoderDir: null };
  }
  const manifestPath = join(dir, 'content.json');
  let manifest;
  try {
    manifest = JSON.parse(await readFile(manifestPath, 'utf8'));
  } catch (error) {
    throw new Error(`${manifestPath}: cannot read the content manifest (${(error as Error).message})`, {
      cause: error,
    });
  }
  if (manifest.format !== CONTENT_FORMAT)
    throw new Error(`${manifestPath}: not a deltarec content directory`);
  const { count, dim } = manifest;
  const ids = (await readFile(join(dir, manifest.ids), 'utf8')).split('\n');
  if (ids[ids.length - 1] === '') ids.pop();
  if (ids.length !== count)
    throw new Error(`${join(dir, manifest.ids)}: ${ids.length} ids, the manifest says ${count}`);
  const vectors = await readFloat32(join(dir, manifest.vectors), count * dim);
  let sparse: CsrMatrix | undefined;
  if (manifest.sparse) {
    const s = manifest.sparse;
    const indptr = await readInt32(join(dir, s.indptr), count + 1);
    const indices = await readInt32(join(dir, s.indices), s.nnz);
    const values = await readFloat32(join(dir, s.values), s.nnz);
    sparse = { rows: count, cols: s.cols, indptr, indices, values };
  }
  return {
    dir,
    ids,
    dim,
    vectors,
    encoder: manifest.encoder,
    sparse,
    encoderDir: manifest.encoder_state ? join(dir, manifest.encoder_state) : null,
  };
}

/** The saved text encoder of a content directory (tfidf-svd), or null when the vectors came from elsewhere. */
export async function loadContentEncoder(content: LoadedContent): Promise<TfidfSvdEncoder | null> {
  return content.encoderDir ? TfidfSvdEncoder.load(content.encoderDir) : null;
}

async function readInt32(path: string, length: number): Promise<Int32Array> {
  const bytes = await readFile(path);
  if (bytes.byteLength !== length * 4)
    throw new Error(`${path}: expected ${length} int32 values, found ${bytes.byteLength} bytes`);
  const out = new Int32Array(length);
  new Uint8Array(out.buffer).set(bytes);
  return out;
}

export interface AlignOptions {
  /** Items without a vector: 'warn' (default: one line on stderr, zero rows), 'error', or 'ignore'. */
  missing?: 'warn' | 'error' | 'ignore';
}

/** Row of each item id in content (length itemIds.length; -1 for ids without a vector and for the padding ''). */
export function contentRows(
  content: ContentVectors,
  itemIds: readonly string[],
  options: AlignOptions = {},
): Int32Array {
  const rowById = new Map<string, number>();
  content.ids.forEach((id, row) => rowById.set(id, row));
  const rows = new Int32Array(itemIds.length).fill(-1);
  const missing: string[] = [];
  for (let k = 1; k < itemIds.length; k++) {
    const row = rowById.get(itemIds[k]);
    if (row === undefined) missing.push(itemIds[k]);
    else rows[k] = row;
  }
  if (missing.length > 0 && options.missing !== 'ignore') {
    const message =
      `${missing.length} of ${itemIds.length - 1} items have no content vector` +
      ` (e.g. ${missing
        .slice(0, 5)
        .map((id) => `'${id}'`)
        .join(', ')})`;
    if (options.missing === 'error') throw new Error(`alignContent: ${message}`);
    process.stderr.write(`deltarec: warning: ${message}; they get zero content vectors\n`);
  }
  return rows;
}

/**
 * Content matrix aligned to item indices: (itemIds.length) x dim, where itemIds[0] = '' is the padding row (zeros),
 * e.g. PreparedSplit.itemIds, so the result is (numItems + 1) x dim. Items without a vector get zero rows.
 */
export function alignContent(
  content: ContentVectors,
  itemIds: readonly string[],
  options: AlignOptions = {},
): Float32Array {
  const rows = contentRows(content, itemIds, options);
  const { dim } = content;
  const out = new Float32Array(itemIds.length * dim);
  for (let k = 1; k < itemIds.length; k++)
    if (rows[k] >= 0) out.set(content.vectors.subarray(rows[k] * dim, (rows[k] + 1) * dim), k * dim);
  return out;
}

/** The sparse rows aligned the same way (empty rows for padding and items without content); null if none saved. */
export function alignSparse(
  content: ContentVectors,
  itemIds: readonly string[],
  options: AlignOptions = {},
): CsrMatrix | null {
  const s = content.sparse;
  if (!s) return null;
  const rows = contentRows(content, itemIds, { missing: 'ignore', ...options });
  const indptr = new Int32Array(itemIds.length + 1);
  for (let k = 0; k < itemIds.length; k++)
    indptr[k + 1] = indptr[k] + (rows[k] >= 0 ? s.indptr[rows[k] + 1] - s.indptr[rows[k]] : 0);
  const indices = new Int32Array(indptr[itemIds.length]);
  const values = new Float32Array(indptr[itemIds.length]);
  for (let k = 0; k < itemIds.length; k++) {
    if (rows[k] < 0) continue;
    indices.set(s.indices.subarray(s.indptr[rows[k]], s.indptr[rows[k] + 1]), indptr[k]);
    values.set(s.values.subarray(s.indptr[rows[k]], s.indptr[rows[k] + 1]), indptr[k]);
  }
  return { rows: itemIds.length, cols: s.cols, indptr, indices, values };
}
