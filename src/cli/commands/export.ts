import { existsSync } from 'node:fs';
import { lstat, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { loadModel } from '../../model/artifact.js';
import { loadLexicalFusion } from '../../model/fusion.js';
import { sasrecToOnnx } from '../../model/onnx-export.js';
import { encodeOnnxModel } from '../../model/onnx-proto.js';
import { applyLogFile, changeTarget } from '../../serve/runtime.js';
import { FileExistsError, writeFilesAtomically } from '../../util/files.js';

export const summary =
  'export a trained SASRec model to ONNX (encoder + item matrix) with an item-id sidecar';

const FORMATS = ['onnx'];

const HELP = `usage: deltarec export --model DIR --format onnx --out FILE.onnx [--force]

Writes the model's sequence encoder and item matrix as one ONNX graph (opset 17) to FILE.onnx, and the item ids
and feeding rules to FILE.onnx.json (docs/onnx.md shows how to serve it from Python's onnxruntime):
  input   item_ids     int64 [batch, length]   item indices, most recent last, 0 = padding
  output  user_vector  float [batch, d]
  output  scores       float [batch, numItems + 1]   column i scores item_ids[i] of the sidecar; column 0 is -inf
Items added, updated or deleted through the service (DIR/catalog.log) are applied, as \`deltarec recommend\` does:
added rows are scored (an update of an added item replaces its row), deleted rows and replaced trained rows get
-inf (they still count in histories).
A model saved with lexical fusion is exported without it (the sidecar says so and gives the weight).

options:
  --model DIR      model artifact directory (required; a SASRec model: sasrec or content-*)
  --format F       export format: onnx (required)
  --out FILE       the .onnx file to write (required); the sidecar is FILE.json. Both are written atomically.
  --force          replace FILE and FILE.json when they exist (default: refuse)
  --catalog FILE   catalog change log to apply (default DIR/catalog.log when it exists)
  --no-catalog     export the model's catalog as saved
`;

export async function run(args: string[]): Promise<number> {
  let values;
  try {
    values = parseArgs({
      args,
      options: {
        model: { type: 'string' },
        format: { type: 'string' },
        out: { type: 'string' },
        force: { type: 'boolean' },
        catalog: { type: 'string' },
        'no-catalog': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }).values;
  } catch (error) {
    console.error(`deltarec export: ${(error as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const missing = (['model', 'format', 'out'] as const).filter((name) => !values[name]);
  if (missing.length > 0) {
    console.error(`deltarec export: ${missing.map((m) => `--${m}`).join(', ')} required\n\n${HELP}`);
    return 2;
  }
  if (!FORMATS.includes(values.format!)) {
    console.error(`deltarec export: unknown --format '${values.format}' (known: ${FORMATS.join(', ')})`);
    return 2;
  }
  const out = resolve(values.out!);
  const sidecarPath = `${out}.json`;
  const force = values.force ?? false;
  try {
    // Refuse before the (possibly slow) model load; writeFilesAtomically checks again when it places the files.
    if (!(await stat(dirname(out)).catch(() => null))?.isDirectory())
      throw new Error(`${dirname(out)}: directory does not exist`);
    for (const path of [out, sidecarPath]) {
      const info = await lstat(path).catch(() => null);
      if (info && !info.isFile()) throw new Error(`${path} exists and is not a file; it is never replaced`);
      if (info && !force) throw new FileExistsError(path);
    }
    const loaded = await loadModel(values.model!);
    let itemIds = loaded.itemIds;
    const retired: number[] = [];
    const logPath = values.catalog ?? join(loaded.dir, 'catalog.log');
    if (!values['no-catalog'] && (values.catalog || existsSync(logPath))) {
      // The service's rule for the log (runtime.ts applyChange), as deltarec recommend applies it.
      const target = changeTarget(
        loaded,
        {
          append: (vectors, count) => loaded.model.appendItems(vectors, count),
          replace: (row, vector) => loaded.model.replaceItems(Int32Array.of(row), vector),
          retire: (row) => retired.push(row),
        },
        null,
      );
      const changes = await applyLogFile(target, loaded, logPath);
      itemIds = target.catalog.rowIds();
      console.error(`deltarec export: applied ${changes} catalog changes from ${logPath}`);
    }
    const lexicalWeight = loaded.lexical ? (await loadLexicalFusion(loaded.lexical.dir)).weight : 0;
    const { model, sidecar } = sasrecToOnnx({
      model: loaded.model,
      itemIds,
      numWarm: loaded.numWarm,
      retired,
      onnxFile: basename(out),
      lexicalWeight,
    });
    const encoded = encodeOnnxModel(model);
    const sidecarBytes = Buffer.from(JSON.stringify(sidecar, null, 1) + '\n');
    await writeFilesAtomically(
      [
        { path: out, chunks: encoded.chunks },
        { path: sidecarPath, chunks: [sidecarBytes] },
      ],
      { overwrite: force },
    );
    const c = loaded.model.config;
    console.error(
      `deltarec export: wrote ${out} (${encoded.length} bytes; ${c.strategy}, d ${c.d}, ${loaded.model.numItems} items, ` +
        `max length ${c.maxLength}, opset ${sidecar.opset}) and ${sidecarPath}`,
    );
    if (lexicalWeight > 0) {
      console.error(
        `deltarec export: the model uses lexical fusion (weight ${lexicalWeight}); the graph scores without it (see the sidecar)`,
      );
    }
    return 0;
  } catch (error) {
    const { code, path } = error as NodeJS.ErrnoException;
    const message =
      error instanceof FileExistsError
        ? `${error.path} already exists (pass --force to replace it)`
        : code === 'ENOENT' && path
          ? `cannot read ${path}`
          : (error as Error).message;
    console.error(`deltarec export: ${message}`);
    return 1;
  }
}
