/** Durable, all-or-nothing file writes. */
import { randomBytes } from 'node:crypto';
import { link, lstat, open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';

export interface FileToWrite {
  path: string;
  /** The contents, written in order (e.g. a protobuf's chunks, without joining them). */
  chunks: readonly Uint8Array[];
}

/** Thrown when a target exists and overwriting was not allowed; `path` names it. */
export class FileExistsError extends Error {
  constructor(readonly path: string) {
    super(`${path} already exists`);
  }
}

/**
 * Writes every file to a temporary sibling, checks the byte count, fsyncs it, then moves all of them into place and
 * fsyncs their directories, so a reader sees each file complete or not at all. Without `overwrite` an existing
 * target is refused before anything is written (FileExistsError), and again atomically when it is moved into place
 * (link fails on an existing name), so a file created meanwhile is never replaced. On failure the temporary files
 * and the targets this call had already placed are removed.
 */
export async function writeFilesAtomically(
  files: readonly FileToWrite[],
  options: { overwrite: boolean },
): Promise<void> {
  const targets = files.map((f) => resolve(f.path));
  if (!options.overwrite) {
    for (const target of targets) {
      if (await lstat(target).catch(() => null)) throw new FileExistsError(target);
    }
  }
  const temps: string[] = [];
  const placed: string[] = [];
  try {
    for (const [i, file] of files.entries()) {
      const temp = tempSibling(targets[i]);
      temps.push(temp);
      await writeSynced(temp, file.chunks);
    }
    for (const [i, target] of targets.entries()) {
      await place(temps[i], target, options.overwrite);
      placed.push(target);
    }
    for (const directory of new Set(targets.map((t) => dirname(t)))) await syncPath(directory);
  } catch (error) {
    for (const path of [...temps, ...(options.overwrite ? [] : placed)]) await rm(path, { force: true });
    throw error;
  }
}

/** A new hidden name next to `target` for its temporary file. */
export function tempSibling(target: string): string {
  return join(dirname(target), `.${basename(target)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
}

/**
 * Moves a complete, fsynced temporary file to `target`: renamed over it with `overwrite`, else linked, which fails
 * (FileExistsError) when the name exists, so a file created meanwhile is never replaced.
 */
async function place(temp: string, target: string, overwrite: boolean): Promise<void> {
  if (overwrite) return rename(temp, target);
  try {
    await link(temp, target);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') throw new FileExistsError(target);
    throw error;
  }
  await rm(temp);
}

/**
 * Moves a complete, fsynced temporary file (tempSibling) to `target` as writeFilesAtomically does one of its files,
 * and fsyncs the directory, so that the new name is durable too.
 */
export async function moveIntoPlace(temp: string, target: string, overwrite: boolean): Promise<void> {
  await place(temp, target, overwrite);
  await syncPath(dirname(target));
}

/** Chunks smaller than this are gathered into one write (a protobuf has many tiny ones). */
const GATHER_BYTES = 1 << 16;

async function writeSynced(path: string, chunks: readonly Uint8Array[]): Promise<void> {
  const handle = await open(path, 'wx');
  try {
    let expected = 0;
    let written = 0;
    const writeAll = async (bytes: Uint8Array) => {
      let offset = 0;
      while (offset < bytes.length) {
        const { bytesWritten } = await handle.write(bytes, offset, bytes.length - offset);
        offset += bytesWritten;
      }
      written += offset;
    };
    let gathered: Uint8Array[] = [];
    let gatheredBytes = 0;
    const flush = async () => {
      if (gathered.length > 0) await writeAll(Buffer.concat(gathered, gatheredBytes));
      gathered = [];
      gatheredBytes = 0;
    };
    for (const chunk of chunks) {
      expected += chunk.length;
      if (chunk.length >= GATHER_BYTES) {
        await flush();
        await writeAll(chunk);
      } else {
        gathered.push(chunk);
        gatheredBytes += chunk.length;
        if (gatheredBytes >= GATHER_BYTES) await flush();
      }
    }
    await flush();
    await handle.sync();
    const { size } = await handle.stat();
    if (written !== expected || size !== expected)
      throw new Error(`${path}: wrote ${size} bytes, expected ${expected}`);
  } finally {
    await handle.close();
  }
}

async function syncPath(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
