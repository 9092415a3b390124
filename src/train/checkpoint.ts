/**
 * Model checkpoints as one safetensors file holding every tensor of `SASRec.parameters()`, with the config in
 * `__metadata__.config`. Written durably and all at once (writeFilesAtomically: byte count checked, fsynced, renamed
 * into place), so a checkpoint on disk is always complete; read with the artifact reader's validation.
 */
import type { Kernels } from '../kernels/types.js';
import { encodeSafetensors, readSafetensors } from '../model/artifact.js';
import { SASRec, type SASRecConfig } from '../model/sasrec.js';
import { writeFilesAtomically } from '../util/files.js';

export async function saveCheckpoint(
  path: string,
  model: SASRec,
  extra: Record<string, string> = {},
): Promise<void> {
  const metadata = { format: 'deltarec-sasrec', config: JSON.stringify(model.config), ...extra };
  const bytes = encodeSafetensors(model.parameters(), metadata);
  await writeFilesAtomically([{ path, chunks: [bytes] }], { overwrite: true });
}

export async function loadCheckpoint(
  path: string,
  kernels?: Kernels,
): Promise<{ model: SASRec; metadata: Record<string, string> }> {
  const { tensors, metadata } = await readSafetensors(path);
  if (!metadata.config) throw new Error(`${path}: no model config in __metadata__`);
  let config: SASRecConfig;
  try {
    config = JSON.parse(metadata.config) as SASRecConfig;
  } catch (error) {
    throw new Error(`${path}: __metadata__.config is not JSON: ${(error as Error).message}`, {
      cause: error,
    });
  }
  const parameters = new Map<string, Float32Array>();
  for (const [name, tensor] of tensors) {
    if (!(tensor.data instanceof Float32Array))
      throw new Error(`${path}: tensor ${name} is not F32 (a checkpoint holds F32 tensors only)`);
    parameters.set(name, tensor.data);
  }
  return { model: SASRec.fromParameters(config, parameters, kernels, { own: true }), metadata };
}
