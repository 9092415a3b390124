/**
 * Model checkpoints as one safetensors file (8-byte little-endian header length, JSON header, raw little-endian
 * F32 data) holding every tensor of `SASRec.parameters()`, with the config in `__metadata__.config`. Written to a
 * temporary file and renamed, so a checkpoint on disk is always complete.
 */
import { readFile, rename, writeFile } from 'node:fs/promises';
import type { Kernels } from '../kernels/types.js';
import { SASRec, type SASRecConfig } from '../model/sasrec.js';

export async function saveCheckpoint(
  path: string,
  model: SASRec,
  extra: Record<string, string> = {},
): Promise<void> {
  const tensors = model.parameters();
  const header: Record<string, unknown> = {
    __metadata__: { format: 'deltarec-sasrec', config: JSON.stringify(model.config), ...extra },
  };
  let offset = 0;
  for (const t of tensors) {
    const bytes = t.data.length * 4;
    header[t.name] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8); // keep the data 8-byte aligned
  const headerBytes = Buffer.from(json, 'utf8');
  const out = Buffer.alloc(8 + headerBytes.length + offset);
  out.writeBigUInt64LE(BigInt(headerBytes.length), 0);
  headerBytes.copy(out, 8);
  let pos = 8 + headerBytes.length;
  for (const t of tensors) {
    Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).copy(out, pos);
    pos += t.data.byteLength;
  }
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, out);
  await rename(tmp, path);
}

export async function loadCheckpoint(
  path: string,
  kernels?: Kernels,
): Promise<{ model: SASRec; metadata: Record<string, string> }> {
  const buf = await readFile(path);
  if (buf.length < 8) throw new Error(`${path}: not a safetensors file (too short)`);
  const headerLength = Number(buf.readBigUInt64LE(0));
  if (8 + headerLength > buf.length)
    throw new Error(`${path}: header length ${headerLength} exceeds the file`);
  let header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  try {
    header = JSON.parse(buf.subarray(8, 8 + headerLength).toString('utf8'));
  } catch (err) {
    throw new Error(`${path}: invalid safetensors header: ${(err as Error).message}`, { cause: err });
  }
  const metadata = (header.__metadata__ ?? {}) as unknown as Record<string, string>;
  if (!metadata.config) throw new Error(`${path}: no model config in __metadata__`);
  const config = JSON.parse(metadata.config) as SASRecConfig;
  const base = 8 + headerLength;
  const tensors = new Map<string, Float32Array>();
  for (const [name, info] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    if (info.dtype !== 'F32')
      throw new Error(`${path}: tensor ${name} has dtype ${info.dtype}, expected F32`);
    const [from, to] = info.data_offsets;
    if (base + to > buf.length) throw new Error(`${path}: tensor ${name} extends past the end of the file`);
    // Copy: the file buffer's offset need not be 4-byte aligned.
    const data = new Float32Array((to - from) / 4);
    Buffer.from(data.buffer).set(buf.subarray(base + from, base + to));
    tensors.set(name, data);
  }
  return { model: SASRec.fromParameters(config, tensors, kernels), metadata };
}
