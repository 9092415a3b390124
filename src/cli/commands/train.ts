import { parseArgs } from 'node:util';
import { evaluate, fit, load, MODEL_KINDS, save, type FittedModel, type ModelKind } from '../../api.js';
import { alignContent, loadContent, loadContentEncoder } from '../../content/store.js';
import { TfidfSvdEncoder } from '../../content/tfidf.js';
import { loadArtifact } from '../../model/artifact.js';
import { readCatalog } from '../../data/readers.js';
import type { ContentPart } from '../../model/artifact.js';
import { loadSplit } from '../../data/store.js';
import type { CsrMatrix } from '../../content/sparse.js';
import {
  MODEL_ARGS,
  MODEL_ARGS_HELP,
  checkModelOutput,
  floatOption,
  intOption,
  listOption,
  modelSettings,
  withNegativeNumbers,
} from '../options.js';
import { buildContent } from '../../eval/data.js';
import { resultsText } from '../../eval/report.js';

export const summary = 'train a model on a prepared split and save it as a model directory';

const HELP = `usage: deltarec train --split DIR --model NAME [--items F] --out MODELDIR [options]

Trains one model on a split written by \`deltarec prepare\`, with early stopping on the split's validation users,
then appends the cold items (content models) and saves the model directory (manifest + safetensors, with the text
encoder and content projection, so \`deltarec serve\` can add new items from text).

  --split DIR        prepared split (required)
  --model NAME       ${MODEL_KINDS.join(' | ')} (default content-delta)
  --content DIR      item content vectors written by \`deltarec embed\` (with its encoder, if any)
  --items F          or: an item catalog (CSV/TSV/JSONL/Parquet), embedded here with the built-in text encoder
                     fitted on the split's warm items (cold items never shape it);
                     one of the two is needed by every model but sasrec
  --fields A,B       catalog fields that make the item text (default title)
  --content-dim N    text encoder dimension before the projection to d (default 512)
  --lexical-weight W lexical fusion (beyond the paper, docs/cold-start.md): add W x TF-IDF cosine to the model's
                     standardized scores; needs --items (default 0: the paper's scoring). Choose W with a backtest
                     experiment (experiments/beauty-backtest.json); \`deltarec serve\` serves fused models
  --out MODELDIR     where to save the model (required). An existing directory is replaced only if it is a
                     deltarec model and holds nothing else (not a split, content, or a service's catalog.log)
  --force            replace --out whatever it holds
  --init-from DIR    warm start from an earlier model of the same kind and architecture (docs/retraining.md):
                     its dense weights and the rows of the items it was trained on, matched by item id; items it
                     had as cold or did not know start from their content. With --items the catalog is encoded
                     with that model's text encoder. The optimizer state starts fresh
  --refit-projection with --init-from: fit the content projection (content-map: the map's start) on this split's
                     warm items instead of keeping the old model's
  --evaluate         also print test metrics (cold / warm / all)

${MODEL_ARGS_HELP}
`;

export async function run(args: string[]): Promise<number> {
  let values;
  try {
    values = parseArgs({
      args: withNegativeNumbers(args),
      options: {
        split: { type: 'string' },
        model: { type: 'string' },
        items: { type: 'string' },
        content: { type: 'string' },
        fields: { type: 'string' },
        'content-dim': { type: 'string' },
        'lexical-weight': { type: 'string' },
        out: { type: 'string' },
        force: { type: 'boolean' },
        'init-from': { type: 'string' },
        'refit-projection': { type: 'boolean' },
        evaluate: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
        ...MODEL_ARGS,
      },
    }).values;
  } catch (error) {
    console.error(`deltarec train: ${(error as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  try {
    if (!values.split || !values.out) throw new Error('--split DIR and --out MODELDIR are required');
    const kind = (values.model ?? 'content-delta') as ModelKind;
    if (!(MODEL_KINDS as readonly string[]).includes(kind)) {
      throw new Error(`--model must be one of ${MODEL_KINDS.join(', ')} (got '${kind}')`);
    }
    const settings = modelSettings(values);
    const lexicalWeight = floatOption(values['lexical-weight'], 'lexical-weight') ?? 0;
    if (lexicalWeight > 0 && (!values.items || values.content || kind === 'knn' || kind === 'sasrec')) {
      throw new Error(
        `--lexical-weight needs --items (the sparse text rows come from the built-in encoder), not --content, and a content model`,
      );
    }
    const fields = listOption(values.fields);
    const contentDim = intOption(values['content-dim'], 'content-dim', 1);
    if (values['refit-projection'] && !values['init-from'])
      throw new Error('--refit-projection applies to a warm start (--init-from DIR)');
    await checkModelOutput(values.out, values.force);
    const initFrom = values['init-from'] ? await warmStartSource(values['init-from'], kind) : null;
    let lexicalRows: CsrMatrix | undefined;
    const split = await loadSplit(values.split);
    let content: Float32Array | null = null;
    let encoder: ContentPart | null = null;
    if (kind !== 'sasrec' && values.content) {
      const loaded = await loadContent(values.content);
      content = alignContent(loaded, split.itemIds);
      const textEncoder = await loadContentEncoder(loaded);
      encoder = textEncoder ? { kind: 'tfidf-svd', save: (dir: string) => textEncoder.save(dir) } : null;
      console.error(`content: ${loaded.ids.length} vectors of ${loaded.dim} dims from ${values.content}`);
    } else if (kind !== 'sasrec') {
      if (!values.items)
        throw new Error(`--content DIR or --items F (the item catalog) is required for model '${kind}'`);
      const catalog = await readCatalog(values.items);
      const built = buildContent(
        split,
        { catalog, encoder: initFrom?.encoder },
        { fields, dim: contentDim, fitOn: 'warm' },
        (line) => console.error(line),
      );
      content = built.content;
      lexicalRows = built.lexical ?? undefined;
      const textEncoder = built.encoder;
      encoder = textEncoder ? { kind: 'tfidf-svd', save: (dir: string) => textEncoder.save(dir) } : null;
    }
    const model = await fit(split, {
      ...settings,
      model: kind,
      content: content ?? undefined,
      encoder,
      lexicalWeight,
      lexicalRows,
      initFrom: initFrom?.model,
      refitProjection: values['refit-projection'],
    });
    if (model.warmStart) {
      const w = model.warmStart;
      console.error(
        `warm start from ${values['init-from']}: ${w.carried} items keep their trained rows; ${w.formerlyCold} ` +
          `formerly cold and ${w.unseen} new warm items start from content; the optimizer started fresh`,
      );
    }
    if (model.training) {
      const t = model.training;
      console.error(
        `trained ${t.history.length} epochs in ${t.seconds.toFixed(0)} s (${t.stopReason}); best epoch ${t.bestEpoch}, validation NDCG@10 ${t.bestMetric?.toFixed(4)}`,
      );
    }
    if (values.evaluate) {
      const r = evaluate(model, split);
      console.log(resultsText({ [kind]: toAggregated(r) }));
    }
    await save(model, values.out);
    console.error(`saved ${values.out}`);
    return 0;
  } catch (error) {
    console.error(`deltarec train: ${(error as Error).message}`);
    return 1;
  }
}

/** The model to warm-start from, with its text encoder (new catalog items are encoded the same way). */
async function warmStartSource(
  dir: string,
  kind: ModelKind,
): Promise<{ model: FittedModel; encoder: TfidfSvdEncoder | null }> {
  const model = await load(dir);
  if (model.kind !== kind) {
    throw new Error(
      `--init-from ${dir} is a '${model.kind}' model; a warm start needs the same kind as --model '${kind}'`,
    );
  }
  const { encoder } = await loadArtifact(dir);
  return { model, encoder: encoder?.kind === 'tfidf-svd' ? await TfidfSvdEncoder.load(encoder.dir) : null };
}

/** A single evaluation in the aggregated shape (std 0) for the text table. */
export function toAggregated(r: {
  cold: Record<string, number>;
  warm: Record<string, number>;
  all: Record<string, number>;
}) {
  const seg = (m: Record<string, number>) =>
    Object.fromEntries(Object.entries(m).map(([k, v]) => [k, { mean: v, std: 0 }]));
  return { cold: seg(r.cold), warm: seg(r.warm), all: seg(r.all) };
}
