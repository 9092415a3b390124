/**
 * Model artifacts (save/load a model directory) and the safetensors format they use.
 *
 * The safetensors file format (https://github.com/huggingface/safetensors), written and read without dependencies:
 * 8-byte little-endian header length N, N bytes of JSON header, then the raw little-endian tensor bytes. The header
 * maps each tensor name to { dtype, shape, data_offsets: [begin, end) } (offsets relative to the byte buffer after
 * the header) and may hold a "__metadata__" object of string values. The byte buffer is indexed entirely, without
 * holes or overlaps. The header is padded with spaces to a multiple of 8 bytes so tensors stay aligned.
 */

import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import type { Kernels } from '../kernels/types.js';
import { withRoom } from '../util/growable.js';
import { SASRec, type SASRecConfig } from './sasrec.js';

export type TensorData = Float32Array | Float64Array | Int32Array | Uint32Array | Uint8Array | Int8Array;
export type Dtype = 'F32' | 'F64' | 'I32' | 'U32' | 'U8' | 'I8';

export interface Tensor {
  name: string;
  shape: number[];
  data: TensorData;
}

const DTYPE_BYTES: Record<Dtype, number> = { F32: 4, F64: 8, I32: 4, U32: 4, U8: 1, I8: 1 };
const MAX_HEADER_BYTES = 100_000_000; // the reference implementation's limit

export function dtypeOf(data: TensorData): Dtype {
  if (data instanceof Float32Array) return 'F32';
  if (data instanceof Float64Array) return 'F64';
  if (data instanceof Int32Array) return 'I32';
  if (data instanceof Uint32Array) return 'U32';
  if (data instanceof Uint8Array) return 'U8';
  if (data instanceof Int8Array) return 'I8';
  throw new Error('unsupported tensor array type');
}

function allocate(dtype: Dtype, length: number): TensorData {
  switch (dtype) {
    case 'F32':
      return new Float32Array(length);
    case 'F64':
      return new Float64Array(length);
    case 'I32':
      return new Int32Array(length);
    case 'U32':
      return new Uint32Array(length);
    case 'U8':
      return new Uint8Array(length);
    case 'I8':
      return new Int8Array(length);
  }
}

function tensorView(dtype: Dtype, buffer: ArrayBufferLike, offset: number, length: number): TensorData {
  switch (dtype) {
    case 'F32':
      return new Float32Array(buffer, offset, length);
    case 'F64':
      return new Float64Array(buffer, offset, length);
    case 'I32':
      return new Int32Array(buffer, offset, length);
    case 'U32':
      return new Uint32Array(buffer, offset, length);
    case 'U8':
      return new Uint8Array(buffer, offset, length);
    case 'I8':
      return new Int8Array(buffer, offset, length);
  }
}

function product(shape: readonly number[]): number {
  let n = 1;
  for (const s of shape) n *= s;
  return n;
}

const littleEndian = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** Serializes tensors (in the given order) and string metadata into one safetensors byte buffer. */
export function encodeSafetensors(tensors: readonly Tensor[], metadata: Record<string, string> = {}): Buffer {
  if (!littleEndian) throw new Error('safetensors writer needs a little-endian machine');
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  for (const t of tensors) {
    if (t.name === '__metadata__' || t.name in header)
      throw new Error(`duplicate or reserved tensor name '${t.name}'`);
    if (product(t.shape) !== t.data.length) {
      throw new Error(
        `tensor '${t.name}': shape [${t.shape}] holds ${product(t.shape)} values, data has ${t.data.length}`,
      );
    }
    const dtype = dtypeOf(t.data);
    const bytes = t.data.length * DTYPE_BYTES[dtype];
    header[t.name] = { dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  const jsonBytes = Buffer.byteLength(json);
  json += ' '.repeat((8 - ((8 + jsonBytes) % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');
  const out = Buffer.allocUnsafe(8 + headerBytes.length + offset);
  out.writeBigUInt64LE(BigInt(headerBytes.length), 0);
  headerBytes.copy(out, 8);
  let position = 8 + headerBytes.length;
  for (const t of tensors) {
    const view = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    out.set(view, position);
    position += view.length;
  }
  return out;
}

export interface DecodedSafetensors {
  tensors: Map<string, { shape: number[]; data: TensorData }>;
  metadata: Record<string, string>;
}

interface TensorEntry {
  name: string;
  dtype: Dtype;
  shape: number[];
  begin: number; // byte range in the data buffer after the header
  end: number;
}

type Fail = (message: string) => never;

function failFor(source: string): Fail {
  return (message) => {
    throw new Error(`${source}: not a valid safetensors file: ${message}`);
  };
}

/** The header length from the file's first 8 bytes, checked against the file's length. */
function headerLengthOf(prefix: Uint8Array, fileLength: number, fail: Fail): number {
  if (fileLength < 8) fail(`file is ${fileLength} bytes, shorter than the 8-byte header length`);
  const headerLength = Number(new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true));
  if (headerLength > MAX_HEADER_BYTES) fail(`header length ${headerLength} exceeds ${MAX_HEADER_BYTES}`);
  if (8 + headerLength > fileLength) fail(`header length ${headerLength} runs past the end of the file`);
  return headerLength;
}

/**
 * Parses and validates the JSON header against the data buffer's length: dtypes, shapes, byte ranges that match
 * them, and a buffer indexed entirely, without holes or overlaps. Entries come back in file order.
 */
function parseHeader(
  headerBytes: Uint8Array,
  dataLength: number,
  fail: Fail,
): { entries: TensorEntry[]; metadata: Record<string, string> } {
  const headerText = Buffer.from(headerBytes.buffer, headerBytes.byteOffset, headerBytes.length).toString(
    'utf8',
  );
  if (!headerText.startsWith('{')) fail('header does not start with "{"');
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(headerText) as Record<string, unknown>;
  } catch (error) {
    return fail(`header is not JSON (${(error as Error).message})`);
  }
  let metadata: Record<string, string> = {};
  const entries: TensorEntry[] = [];
  for (const [name, raw] of Object.entries(header)) {
    if (name === '__metadata__') {
      if (typeof raw !== 'object' || raw === null || Object.values(raw).some((v) => typeof v !== 'string')) {
        fail('__metadata__ must map names to strings');
      }
      metadata = raw as Record<string, string>;
      continue;
    }
    const info = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof info.dtype !== 'string' || !(info.dtype in DTYPE_BYTES)) {
      fail(`tensor '${name}': unsupported dtype ${JSON.stringify(info.dtype)}`);
    }
    const shape = info.shape;
    if (!Array.isArray(shape) || shape.some((s) => !Number.isInteger(s) || s < 0)) {
      fail(`tensor '${name}': shape must be a list of non-negative integers`);
    }
    const offsets = info.data_offsets;
    if (
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !offsets.every((o) => Number.isInteger(o) && o >= 0)
    ) {
      fail(`tensor '${name}': data_offsets must be [begin, end]`);
    }
    const [begin, end] = offsets as [number, number];
    const dtype = info.dtype as Dtype;
    if (end < begin || end > dataLength)
      fail(`tensor '${name}': data_offsets [${begin}, ${end}] outside the data`);
    if (end - begin !== product(shape as number[]) * DTYPE_BYTES[dtype]) {
      fail(`tensor '${name}': ${end - begin} bytes do not match shape [${shape}] of ${dtype}`);
    }
    entries.push({ name, dtype, shape: shape as number[], begin, end });
  }
  // The buffer must be indexed entirely, without holes or overlaps.
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let expected = 0;
  for (const e of entries) {
    if (e.begin !== expected)
      fail(`tensor '${e.name}' starts at byte ${e.begin}, expected ${expected} (hole or overlap)`);
    expected = e.end;
  }
  if (expected !== dataLength) fail(`data holds ${dataLength} bytes but tensors index ${expected}`);
  return { entries, metadata };
}

/** Parses and validates a safetensors byte buffer; errors name `source` and the offending tensor. */
export function decodeSafetensors(bytes: Uint8Array, source: string): DecodedSafetensors {
  const fail = failFor(source);
  const headerLength = headerLengthOf(bytes, bytes.length, fail);
  const dataStart = 8 + headerLength;
  const { entries, metadata } = parseHeader(bytes.subarray(8, dataStart), bytes.length - dataStart, fail);
  const tensors = new Map<string, { shape: number[]; data: TensorData }>();
  for (const e of entries) {
    // A view of the file's bytes where they are aligned for the type (always, for files written here: the header
    // is padded to 8 bytes), so a 1M-item table is not copied again; otherwise a copy.
    const offset = bytes.byteOffset + dataStart + e.begin;
    const data =
      offset % DTYPE_BYTES[e.dtype] === 0
        ? tensorView(e.dtype, bytes.buffer, offset, product(e.shape))
        : allocate(e.dtype, product(e.shape));
    if (data.buffer !== bytes.buffer)
      new Uint8Array(data.buffer).set(bytes.subarray(dataStart + e.begin, dataStart + e.end));
    tensors.set(e.name, { shape: e.shape, data });
  }
  return { tensors, metadata };
}

/**
 * Makes the array a tensor is read into, of its dtype and product(shape) values (checked). The default is a plain
 * typed array; loadArtifact gives item tables a buffer with spare room for appended rows.
 */
export type TensorAllocator = (name: string, dtype: Dtype, shape: readonly number[]) => TensorData;

const READ_CHUNK_BYTES = 64 * 2 ** 20; // below the 2 GiB a single read() returns at most

/** Reads target.length bytes at `position`, in chunks; a short file fails naming `what` and the missing bytes. */
async function readExactly(
  handle: FileHandle,
  target: Uint8Array,
  position: number,
  what: string,
  fail: Fail,
): Promise<void> {
  let done = 0;
  while (done < target.length) {
    const length = Math.min(target.length - done, READ_CHUNK_BYTES);
    const { bytesRead } = await handle.read(target, done, length, position + done);
    if (bytesRead === 0) {
      fail(
        `${what}: the file ends at byte ${position + done}, ${target.length - done} bytes short (truncated?)`,
      );
    }
    done += bytesRead;
  }
}

/**
 * Reads and validates a safetensors file, each tensor straight from the file into its own array (`allocateTensor`'s),
 * with positioned reads: no buffer of the whole file, so loading needs the memory of the tensors, not twice it.
 * Validation and messages are decodeSafetensors's; errors name the file and the tensor.
 */
export async function readSafetensors(
  path: string,
  allocateTensor: TensorAllocator = (_name, dtype, shape) => allocate(dtype, product(shape)),
): Promise<DecodedSafetensors> {
  const fail = failFor(path);
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
  } catch (error) {
    throw new Error(
      `${path}: cannot read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`,
      { cause: error },
    );
  }
  try {
    const fileLength = (await handle.stat()).size;
    const prefix = new Uint8Array(8);
    if (fileLength >= 8) await readExactly(handle, prefix, 0, 'header length', fail);
    const headerLength = headerLengthOf(prefix, fileLength, fail);
    const headerBytes = new Uint8Array(headerLength);
    await readExactly(handle, headerBytes, 8, 'header', fail);
    const dataStart = 8 + headerLength;
    const { entries, metadata } = parseHeader(headerBytes, fileLength - dataStart, fail);
    const tensors = new Map<string, { shape: number[]; data: TensorData }>();
    for (const e of entries) {
      const data = allocateTensor(e.name, e.dtype, e.shape);
      if (dtypeOf(data) !== e.dtype || data.byteLength !== e.end - e.begin) {
        throw new Error(`${path}: tensor '${e.name}': the allocator returned the wrong type or length`);
      }
      const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      await readExactly(handle, bytes, dataStart + e.begin, `tensor '${e.name}'`, fail);
      tensors.set(e.name, { shape: e.shape, data });
    }
    return { tensors, metadata };
  } finally {
    await handle.close();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Model artifact: a directory with manifest.json, model.safetensors and optional content states.
//
//   manifest.json          format, versions, model kind + configuration, item id map, references to the files below
//   model.safetensors      every model tensor (F32), openable by Python's safetensors / numpy
//   encoder/               text-encoder state (optional), written and read by the content layer
//   projection/            content projection state (optional), written and read by the content layer
// ---------------------------------------------------------------------------------------------------------------

export const ARTIFACT_FORMAT = 'deltarec-model';
export const ARTIFACT_FORMAT_VERSION = 1;

/**
 * A content state owned by another layer (text encoder, projection), saved by that layer into its own
 * subdirectory of the artifact. `kind` tells the loader which class reads it back (e.g. 'tfidf-svd').
 */
export interface ContentPart {
  kind: string;
  save(dir: string): Promise<void>;
}

export interface StateReference {
  kind: string;
  path: string; // subdirectory of the artifact
}

export interface ModelManifest {
  format: typeof ARTIFACT_FORMAT;
  format_version: number;
  deltarec_version: string;
  created_at: string; // ISO 8601
  model: { kind: string; config: Record<string, unknown>; weights: string };
  items: { ids: string[]; num_warm: number }; // ids in index order; ids[0] = '' is the padding row
  /** lexical: the sparse rows and weight of lexical fusion (fusion.ts); absent in artifacts without it. */
  content: {
    encoder: StateReference | null;
    projection: StateReference | null;
    lexical?: StateReference | null;
  };
  /** How the lexical fusion weight was chosen (`deltarec train --lexical-weight auto`): weight and backtest table. */
  lexical_choice?: unknown;
}

/** What saveModel needs from a model: its configuration and every tensor needed to restore it. */
export interface SavableModel {
  readonly config: object;
  readonly numItems: number;
  parameters(): { name: string; shape: number[]; data: Float32Array }[];
}

export interface SaveModelInput {
  kind?: string; // default 'sasrec'
  model: SavableModel;
  itemIds: readonly string[]; // length numItems + 1, itemIds[0] = ''
  numWarm: number;
  encoder?: ContentPart | null;
  projection?: ContentPart | null;
  lexical?: ContentPart | null;
  /** Stored as the manifest's lexical_choice. */
  lexicalChoice?: unknown;
}

const CONTENT_PARTS = ['encoder', 'projection', 'lexical'] as const;

export interface LoadedArtifact {
  dir: string;
  manifest: ModelManifest;
  weights: Map<string, Float32Array>;
  encoder: (StateReference & { dir: string }) | null; // dir: absolute path of the state directory
  projection: (StateReference & { dir: string }) | null;
  lexical: (StateReference & { dir: string }) | null;
}

function findPackageVersion(): string {
  let dir = dirname(new URL(import.meta.url).pathname);
  for (let i = 0; i < 5; i++) {
    const file = join(dir, 'package.json');
    if (existsSync(file)) {
      const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'deltarec' && pkg.version) return pkg.version;
    }
    dir = dirname(dir);
  }
  return 'unknown';
}

export const DELTAREC_VERSION = findPackageVersion();

async function writeFileSynced(path: string, data: string | Uint8Array): Promise<void> {
  const handle = await open(path, 'w');
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** fsyncs every file below dir and the directories themselves (state files written by other layers). */
async function syncTree(dir: string): Promise<void> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) await syncTree(path);
    else if (entry.isFile()) {
      const handle = await open(path, 'r');
      try {
        await handle.sync();
      } finally {
        await handle.close();
      }
    }
  }
  await syncDirectory(dir);
}

async function syncDirectory(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Writes a model artifact to `dir` atomically: everything goes to a temporary sibling directory, which is fsynced
 * and renamed over `dir` (an existing artifact at `dir` is replaced; readers see the old or the new one, never a mix).
 */
export async function saveModel(dir: string, input: SaveModelInput): Promise<ModelManifest> {
  const { model, itemIds, numWarm } = input;
  if (itemIds.length !== model.numItems + 1 || itemIds[0] !== '') {
    throw new Error(
      `saveModel: itemIds must have numItems + 1 = ${model.numItems + 1} entries with itemIds[0] = ''`,
    );
  }
  if (!Number.isInteger(numWarm) || numWarm < 0 || numWarm > model.numItems) {
    throw new Error(`saveModel: numWarm ${numWarm} is outside 0..${model.numItems}`);
  }
  const seen = new Set<string>();
  for (let i = 1; i < itemIds.length; i++) {
    if (!itemIds[i]) throw new Error(`saveModel: item index ${i} has an empty id`);
    if (seen.has(itemIds[i])) throw new Error(`saveModel: duplicate item id '${itemIds[i]}'`);
    seen.add(itemIds[i]);
  }
  const target = resolve(dir);
  await mkdir(dirname(target), { recursive: true });
  const temp = join(
    dirname(target),
    `.${basename(target)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`,
  );
  await mkdir(temp);
  try {
    const kind = input.kind ?? 'sasrec';
    const params = model.parameters();
    const weights = encodeSafetensors(params, {
      format: 'pt', // tells Python loaders these are plain tensors
      deltarec_model: kind,
      deltarec_version: DELTAREC_VERSION,
    });
    await writeFileSynced(join(temp, 'model.safetensors'), weights);
    const content: ModelManifest['content'] = { encoder: null, projection: null };
    for (const part of CONTENT_PARTS) {
      const state = input[part];
      if (!state) continue;
      await state.save(join(temp, part));
      await syncTree(join(temp, part));
      content[part] = { kind: state.kind, path: part };
    }
    const manifest: ModelManifest = {
      format: ARTIFACT_FORMAT,
      format_version: ARTIFACT_FORMAT_VERSION,
      deltarec_version: DELTAREC_VERSION,
      created_at: new Date().toISOString(),
      model: { kind, config: { ...model.config, numItems: model.numItems }, weights: 'model.safetensors' },
      items: { ids: [...itemIds], num_warm: numWarm },
      content,
      ...(input.lexicalChoice === undefined ? {} : { lexical_choice: input.lexicalChoice }),
    };
    await writeFileSynced(join(temp, 'manifest.json'), JSON.stringify(manifest, null, 1) + '\n');
    await syncDirectory(temp);
    let old: string | null = null;
    if (existsSync(target)) {
      old = `${temp}.old`;
      await rename(target, old);
    }
    await rename(temp, target);
    await syncDirectory(dirname(target));
    if (old) await rm(old, { recursive: true, force: true });
    return manifest;
  } catch (error) {
    await rm(temp, { recursive: true, force: true });
    throw error;
  }
}

function checkManifest(raw: unknown, source: string): ModelManifest {
  const fail = (message: string): never => {
    throw new Error(`${source}: ${message}`);
  };
  if (typeof raw !== 'object' || raw === null) fail('manifest is not a JSON object');
  const m = raw as Partial<ModelManifest>;
  if (m.format !== ARTIFACT_FORMAT)
    fail(`field 'format' is ${JSON.stringify(m.format)}, expected '${ARTIFACT_FORMAT}'`);
  if (m.format_version !== ARTIFACT_FORMAT_VERSION) {
    fail(
      `field 'format_version' is ${JSON.stringify(m.format_version)}; this deltarec reads version ${ARTIFACT_FORMAT_VERSION}`,
    );
  }
  if (typeof m.model !== 'object' || m.model === null) fail(`field 'model' is missing`);
  const model = m.model as ModelManifest['model'];
  if (typeof model.kind !== 'string') fail(`field 'model.kind' must be a string`);
  if (typeof model.config !== 'object' || model.config === null)
    fail(`field 'model.config' must be an object`);
  if (typeof model.weights !== 'string') fail(`field 'model.weights' must be a file name`);
  if (typeof m.items !== 'object' || m.items === null) fail(`field 'items' is missing`);
  const items = m.items as ModelManifest['items'];
  if (!Array.isArray(items.ids) || items.ids.some((id) => typeof id !== 'string') || items.ids[0] !== '') {
    fail(`field 'items.ids' must be a list of strings starting with '' (padding)`);
  }
  if (!Number.isInteger(items.num_warm) || items.num_warm < 0 || items.num_warm >= items.ids.length) {
    fail(`field 'items.num_warm' must be an integer in 0..${items.ids.length - 1}`);
  }
  const seen = new Set<string>();
  for (let i = 1; i < items.ids.length; i++) {
    if (items.ids[i] === '' || seen.has(items.ids[i]))
      fail(`field 'items.ids': empty or duplicate id at index ${i}`);
    seen.add(items.ids[i]);
  }
  if (typeof m.content !== 'object' || m.content === null) fail(`field 'content' is missing`);
  return m as ModelManifest;
}

/**
 * Reads an artifact's tensor file. Item tables ((numItems + 1) x width) are read into arrays with spare room
 * (util/growable.ts `withRoom`), so the model can keep them as they are (SASRec.fromParameters `own`) and the
 * first appends after a load still write in place.
 */
async function readTensorFile(dir: string, name: string, itemRows: number) {
  return readSafetensors(join(dir, name), (_name, dtype, shape) =>
    dtype === 'F32' && shape.length === 2 && shape[0] === itemRows
      ? withRoom(Float32Array, product(shape), shape[1])
      : allocate(dtype, product(shape)),
  );
}

/**
 * Reads and validates an artifact directory without constructing the model. `weights: false` reads only the
 * manifest and the content states (`weights` is then empty): for a process that hands the model to worker threads
 * which load it themselves, so a 1M-item model's tensors are not read twice.
 */
export async function loadArtifact(
  dir: string,
  options: { weights?: boolean } = {},
): Promise<LoadedArtifact> {
  const root = resolve(dir);
  const info = await stat(root).catch(() => null);
  if (!info?.isDirectory()) throw new Error(`${root}: model directory does not exist`);
  const manifestPath = join(root, 'manifest.json');
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(manifestPath, 'utf8'));
  } catch (error) {
    throw new Error(`${manifestPath}: cannot read the manifest (${(error as Error).message})`, {
      cause: error,
    });
  }
  const manifest = checkManifest(raw, manifestPath);
  const weights = new Map<string, Float32Array>();
  const decoded =
    options.weights === false
      ? { tensors: [] }
      : await readTensorFile(root, manifest.model.weights, manifest.items.ids.length);
  for (const [name, t] of decoded.tensors) {
    if (!(t.data instanceof Float32Array))
      throw new Error(`${join(root, manifest.model.weights)}: tensor '${name}' is not F32`);
    weights.set(name, t.data);
  }
  const states: Pick<LoadedArtifact, (typeof CONTENT_PARTS)[number]> = {
    encoder: null,
    projection: null,
    lexical: null,
  };
  for (const part of CONTENT_PARTS) {
    const ref = manifest.content[part];
    if (!ref) continue;
    if (typeof ref.kind !== 'string' || typeof ref.path !== 'string') {
      throw new Error(`${manifestPath}: field 'content.${part}' must be { kind, path }`);
    }
    const stateDir = join(root, ref.path);
    if (!(await stat(stateDir).catch(() => null))?.isDirectory()) {
      throw new Error(`${manifestPath}: ${part} state directory ${stateDir} is missing`);
    }
    states[part] = { ...ref, dir: stateDir };
  }
  return { dir: root, manifest, weights, ...states };
}

/** `weights` is empty: the model took the tensors it read (they are its tables now, not copies). */
export interface LoadedModel extends LoadedArtifact {
  model: SASRec;
  itemIds: string[];
  numWarm: number;
}

/** Loads an artifact and rebuilds its model (kind 'sasrec'); checks that the item map matches the weights. */
export async function loadModel(dir: string, kernels?: Kernels): Promise<LoadedModel> {
  const artifact = await loadArtifact(dir);
  const { manifest } = artifact;
  const source = join(artifact.dir, 'manifest.json');
  if (manifest.model.kind !== 'sasrec') {
    throw new Error(`${source}: model kind '${manifest.model.kind}' is not supported (expected 'sasrec')`);
  }
  let model: SASRec;
  try {
    model = SASRec.fromParameters(
      manifest.model.config as unknown as SASRecConfig,
      artifact.weights,
      kernels,
      { own: true },
    );
  } catch (error) {
    throw new Error(`${artifact.dir}: weights do not match the manifest (${(error as Error).message})`, {
      cause: error,
    });
  }
  if (model.numItems + 1 !== manifest.items.ids.length) {
    throw new Error(
      `${source}: 'items.ids' lists ${manifest.items.ids.length - 1} items but the weights hold ${model.numItems}`,
    );
  }
  artifact.weights.clear(); // the model owns these arrays now
  return { ...artifact, model, itemIds: manifest.items.ids, numWarm: manifest.items.num_warm };
}
