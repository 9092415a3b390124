import { parseArgs } from 'node:util';
import {
  DEFAULT_AUTO_MODELS,
  DEFAULT_LEXICAL_GRID,
  evaluate,
  fit,
  load,
  MODEL_KINDS,
  save,
  withLexicalFusion,
  type FitOptions,
  type FittedModel,
  type LexicalChoice,
  type ModelKind,
} from '../../api.js';
import { alignContent, loadContent, loadContentEncoder } from '../../content/store.js';
import { ANALYZERS, TfidfSvdEncoder } from '../../content/tfidf.js';
import { loadArtifact } from '../../model/artifact.js';
import { readCatalog, readInteractions, type InteractionReadOptions } from '../../data/readers.js';
import type { SplitOptions } from '../../data/split.js';
import type { PreparedSplit } from '../../data/types.js';
import type { ContentPart } from '../../model/artifact.js';
import { loadSplit, readSplitManifest } from '../../data/store.js';
import { changedSequences } from '../../data/changed.js';
import type { CsrMatrix } from '../../content/sparse.js';
import {
  MODEL_ARGS,
  MODEL_ARGS_HELP,
  analyzerOptions,
  checkModelOutput,
  floatOption,
  intOption,
  listOption,
  modelSettings,
  withNegativeNumbers,
} from '../options.js';
import { backtestSplit, buildContent, contentWordVectors, type ContentConfig } from '../../eval/data.js';
import { resultsText } from '../../experiment/report.js';

export const summary = 'train a model on a prepared split and save it as a model directory';

const HELP = `usage: deltarec train --split DIR --model NAME [--items F] --out MODELDIR [options]

Trains one model on a split written by \`deltarec prepare\`, with early stopping on the split's validation users,
then appends the cold items (content models) and saves the model directory (manifest + safetensors, with the text
encoder and content projection, so \`deltarec serve\` can add new items from text).

  --split DIR        prepared split (required)
  --model NAME       ${MODEL_KINDS.join(' | ')} | auto (default content-delta). auto: the backtest
                     described under --lexical-weight auto chooses the variant among --auto-models and the fusion
                     weight among --lexical-grid together (a fixed --lexical-weight W: only the variant); costs
                     one training per candidate on the shorter period plus the real one; needs --items
  --auto-models L    the variants --model auto compares (default ${DEFAULT_AUTO_MODELS.join(',')})
  --content DIR      item content vectors written by \`deltarec embed\` (with its encoder, if any)
  --items F          or: an item catalog (CSV/TSV/JSONL/Parquet), embedded here with the built-in text encoder
                     fitted on the split's warm items (cold items never shape it);
                     one of the two is needed by every model but sasrec
  --fields A,B       catalog fields that make the item text (default title); NAME:WEIGHT multiplies a field's
                     term counts (e.g. title:2,brand)
  --content-dim N    text encoder dimension before the projection to d (default 512)
  --analyzer A       text encoder terms: word (default), char (character 3-5-grams within words) or word+char;
                     also the terms of --lexical-weight's TF-IDF rows
  --lexical-analyzer A  terms of --lexical-weight's TF-IDF rows when they should differ from --analyzer's (e.g.
                     --analyzer char --lexical-analyzer word: Beauty's backtest choice, not confirmed on its
                     test period, docs/cold-start.md)
  --word-vectors S   append mean word vectors to the encoder output (the optional npm package: wink; or a GloVe
                     text file); see \`deltarec embed --help\` and docs/cold-start.md
  --lexical-weight W lexical fusion (beyond the paper, docs/cold-start.md): add W x TF-IDF cosine to the model's
                     standardized scores; needs --items (default 0: the paper's scoring); \`deltarec serve\` serves
                     fused models. W = auto chooses it on a backtest inside the training data: the interactions
                     the split was prepared from, before its threshold T, split again with the same options; a
                     model trained there scores every weight of --lexical-grid on that inner test period and the
                     best all-cases NDCG@10 wins (0 included). Costs one extra training on the shorter period;
                     the table is printed and stored in the model's manifest
  --lexical-cold-weight W  cold-aware fusion (docs/cold-start.md): the cosine counts W more for items without a
                     trained delta (cold at training time or added later); needs a numeric --lexical-weight
  --lexical-last-weight W  cold-aware fusion: add W x cosine with the last history item's row alone; needs a
                     numeric --lexical-weight (Beauty's backtest choice: --lexical-weight 6 --lexical-cold-weight
                     8 --lexical-last-weight 4)
  --lexical-grid L   weights tried by --lexical-weight auto (default ${DEFAULT_LEXICAL_GRID.join(',')})
  --out MODELDIR     where to save the model (required). An existing directory is replaced only if it is a
                     deltarec model and holds nothing else (not a split, content, or a service's catalog.log)
  --force            replace --out whatever it holds
  --init-from DIR    warm start from an earlier model of the same kind and architecture (docs/retraining.md):
                     its dense weights and (see --init-items) the rows of the items it was trained on, matched by
                     item id; items it had as cold or did not know start from their content. With --items the catalog is encoded
                     with that model's text encoder. The optimizer state starts fresh
  --init-items I     with --init-from: where the trainable rows of the items the old model was trained on start:
                     old (their old rows) or fresh (as in a new model: only the dense weights are carried).
                     Default: fresh for content-delta and content-map (zero deltas), old for the others
  --shrink L         with --init-from: shrink and perturb (Ash & Adams 2020): every carried value starts at
  --perturb S        L x its old value + S x its initialization in a new model (same seed); both in [0, 1],
                     default 1 and 0 (the old values as they are); e.g. --shrink 0.5 --perturb 0.01
  --warmup-steps N   raise the learning rate linearly over the first N steps (default 0: off); for a warm start,
                     whose fresh optimizer state otherwise takes full-size steps from trained weights
  --train-changed DIR  with --init-from: train only on the sequences that are new or changed since the split DIR
                     (the one the --init-from model was trained on); the others, which that model has seen as they
                     are, are left out, so an epoch costs their share less (docs/retraining.md)
  --dense-lr-scale F the dense weights (positions, blocks, final layer norm) learn at F x --lr, the item rows at
                     --lr (default 1); e.g. --init-from ... --dense-lr-scale 0.2: carried weights move slowly
                     while fresh deltas learn at the full rate. F = 0 freezes the dense weights
  --ema DECAY        weight averaging: validate, keep and save an exponential moving average of the weights,
                     updated every step with decay min(DECAY, (1 + t) / (10 + t)); in [0, 1), default 0 (off);
                     e.g. 0.995 averages over about 200 steps
  --replay F         with --train-changed: each epoch also trains a new seeded sample of F (in [0, 1]) of the
                     unchanged sequences, shuffled in with the changed ones (e.g. 0.2); an epoch is then the
                     changed sequences plus that sample
  --lr-schedule S    constant (default) | cosine: the learning rate falls to 0 along a half cosine over --epochs
                     (a fixed budget, e.g. --init-from ... --epochs 7; early stopping still applies)
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
        analyzer: { type: 'string' },
        'lexical-analyzer': { type: 'string' },
        'word-vectors': { type: 'string' },
        'lexical-weight': { type: 'string' },
        'lexical-grid': { type: 'string' },
        'lexical-cold-weight': { type: 'string' },
        'lexical-last-weight': { type: 'string' },
        'auto-models': { type: 'string' },
        out: { type: 'string' },
        force: { type: 'boolean' },
        'init-from': { type: 'string' },
        'refit-projection': { type: 'boolean' },
        'init-items': { type: 'string' },
        shrink: { type: 'string' },
        perturb: { type: 'string' },
        'warmup-steps': { type: 'string' },
        'lr-schedule': { type: 'string' },
        'dense-lr-scale': { type: 'string' },
        ema: { type: 'string' },
        replay: { type: 'string' },
        'train-changed': { type: 'string' },
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
    const kind = (values.model ?? 'content-delta') as ModelKind | 'auto';
    if (kind !== 'auto' && !(MODEL_KINDS as readonly string[]).includes(kind)) {
      throw new Error(`--model must be one of ${MODEL_KINDS.join(', ')}, auto (got '${kind}')`);
    }
    const settings = modelSettings(values);
    const autoModel = kind === 'auto';
    const autoModels = listOption(values['auto-models']) as ModelKind[] | undefined;
    if (autoModels && !autoModel) throw new Error('--auto-models applies to --model auto');
    if (autoModels?.length === 0) throw new Error('--auto-models needs at least one model');
    if (autoModel && (!values.items || values.content || values['init-from'])) {
      throw new Error(
        `--model auto needs --items (the backtest encodes the catalog again for its own split), not --content or --init-from`,
      );
    }
    const autoWeight = values['lexical-weight'] === 'auto';
    const lexicalWeight = autoWeight
      ? 'auto'
      : (floatOption(values['lexical-weight'], 'lexical-weight') ?? (autoModel ? undefined : 0));
    const auto = autoWeight || autoModel;
    if (
      lexicalWeight !== 0 &&
      lexicalWeight !== undefined &&
      (!values.items || values.content || kind === 'knn' || kind === 'sasrec')
    ) {
      throw new Error(
        `--lexical-weight needs --items (the sparse text rows come from the built-in encoder), not --content, and a content model`,
      );
    }
    const lexicalColdWeight = floatOption(values['lexical-cold-weight'], 'lexical-cold-weight');
    const lexicalLastWeight = floatOption(values['lexical-last-weight'], 'lexical-last-weight');
    if (
      (lexicalColdWeight !== undefined || lexicalLastWeight !== undefined) &&
      typeof lexicalWeight !== 'number'
    )
      throw new Error(
        '--lexical-cold-weight and --lexical-last-weight need a numeric --lexical-weight (not auto)',
      );
    const lexicalGrid = listOption(values['lexical-grid'])?.map((w) => floatOption(w, 'lexical-grid')!);
    if (lexicalGrid && !(autoWeight || (autoModel && lexicalWeight === undefined)))
      throw new Error('--lexical-grid applies to --lexical-weight auto and --model auto');
    if (lexicalGrid?.length === 0) throw new Error('--lexical-grid needs at least one weight');
    const fields = listOption(values.fields);
    const contentDim = intOption(values['content-dim'], 'content-dim', values['word-vectors'] ? 0 : 1);
    const { analyzer, lexicalAnalyzer, invalid } = analyzerOptions(values);
    if (invalid)
      throw new Error(`--${invalid.name} must be one of ${ANALYZERS.join(', ')} (got '${invalid.value}')`);
    const textOptions: ContentConfig = {
      fields,
      dim: contentDim,
      fitOn: 'warm',
      analyzer,
      lexicalAnalyzer,
      wordVectors: values['word-vectors'],
    };
    if (values['refit-projection'] && !values['init-from'])
      throw new Error('--refit-projection applies to a warm start (--init-from DIR)');
    const initItems = values['init-items'];
    if (initItems !== undefined && !values['init-from'])
      throw new Error('--init-items applies to a warm start (--init-from DIR)');
    if (initItems !== undefined && initItems !== 'old' && initItems !== 'fresh')
      throw new Error(`--init-items must be old or fresh (got '${initItems}')`);
    const shrink = unitOption(values.shrink, 'shrink');
    const perturb = unitOption(values.perturb, 'perturb');
    if ((shrink !== undefined || perturb !== undefined) && !values['init-from'])
      throw new Error(
        `--${shrink !== undefined ? 'shrink' : 'perturb'} applies to a warm start (--init-from DIR)`,
      );
    const warmupSteps = intOption(values['warmup-steps'], 'warmup-steps', 0);
    const lrSchedule = values['lr-schedule'];
    if (lrSchedule !== undefined && lrSchedule !== 'constant' && lrSchedule !== 'cosine')
      throw new Error(`--lr-schedule must be constant or cosine (got '${lrSchedule}')`);
    const denseLrScale = floatOption(values['dense-lr-scale'], 'dense-lr-scale');
    const ema = floatOption(values.ema, 'ema');
    if (ema !== undefined && !(ema >= 0 && ema < 1))
      throw new Error(`--ema must be a decay in [0, 1) (got '${values.ema}')`);
    if (values['train-changed'] !== undefined && !values['init-from'])
      throw new Error('--train-changed applies to a warm start (--init-from DIR)');
    const replay = unitOption(values.replay, 'replay');
    if (replay !== undefined && values['train-changed'] === undefined)
      throw new Error('--replay applies to --train-changed DIR');
    await checkModelOutput(values.out, values.force);
    const initFrom = values['init-from']
      ? await warmStartSource(values['init-from'], kind as ModelKind)
      : null;
    let lexicalRows: CsrMatrix | undefined;
    let lexicalBacktest: FitOptions['lexicalBacktest'];
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
      const wordVectors = initFrom?.encoder ? null : await contentWordVectors(textOptions, process.cwd());
      const built = buildContent(
        split,
        { catalog, encoder: initFrom?.encoder, wordVectors },
        textOptions,
        (line) => console.error(line),
      );
      content = built.content;
      lexicalRows = built.lexical ?? undefined;
      if (auto) {
        const inner = await innerBacktest(values.split, split);
        const innerBuilt = buildContent(
          inner,
          { catalog, encoder: initFrom?.encoder, wordVectors },
          textOptions,
          (line) => console.error(`backtest: ${line}`),
        );
        lexicalBacktest = { split: inner, content: innerBuilt.content!, lexicalRows: innerBuilt.lexical! };
      }
      const textEncoder = built.encoder;
      encoder = textEncoder ? { kind: 'tfidf-svd', save: (dir: string) => textEncoder.save(dir) } : null;
    }
    const changed = values['train-changed']
      ? changedSequences(split, await loadSplit(values['train-changed']))
      : null;
    if (changed) {
      const kept = changed.changed + changed.added;
      console.error(
        `training on the sequences changed since ${values['train-changed']}: ${kept} of ` +
          `${kept + changed.unchanged} (${changed.changed} changed, ${changed.added} new users; ` +
          (replay === undefined
            ? `${changed.unchanged} unchanged left out)`
            : `${changed.unchanged} unchanged, a new sample of ${replay} of them each epoch)`),
      );
    }
    const model = await fit(changed && replay === undefined ? changed.split : split, {
      ...settings,
      model: kind,
      content: content ?? undefined,
      encoder,
      lexicalWeight,
      lexicalColdWeight,
      lexicalLastWeight,
      lexicalRows,
      lexicalBacktest,
      lexicalGrid,
      autoModels,
      onLexicalChoice: (choice) => console.error(lexicalChoiceText(choice)),
      initFrom: initFrom?.model,
      refitProjection: values['refit-projection'],
      initItems,
      shrink,
      perturb,
      warmupSteps,
      lrSchedule,
      lrScales: denseLrScale === undefined ? undefined : { dense: denseLrScale },
      ema,
      replay: changed && replay !== undefined ? { always: changed.mask, fraction: replay } : undefined,
    });
    if (model.warmStart) {
      const w = model.warmStart;
      console.error(
        w.rows === 'fresh'
          ? `warm start from ${values['init-from']}: dense weights carried; every item starts from its content ` +
              `(--init-items fresh; deltas at zero); the optimizer started fresh`
          : `warm start from ${values['init-from']}: ${w.carried} items keep their trained rows; ${w.formerlyCold} ` +
              `formerly cold and ${w.unseen} new warm items start from content; the optimizer started fresh`,
      );
      if (w.shrink !== 1 || w.perturb !== 0)
        console.error(
          `shrink and perturb: carried values = ${w.shrink} x old + ${w.perturb} x new initialization`,
        );
    }
    if (model.training) {
      const t = model.training;
      console.error(
        `trained ${t.history.length} epochs in ${t.seconds.toFixed(0)} s (${t.stopReason}); best epoch ${t.bestEpoch}, validation NDCG@10 ${t.bestMetric?.toFixed(4)}`,
      );
    }
    if (values.evaluate) {
      const rows: Record<string, ReturnType<typeof toAggregated>> = {};
      if (model.lexical) {
        rows[model.kind] = toAggregated(evaluate(withLexicalFusion(model, model.lexical.rows, 0), split));
        const { weight, coldWeight, lastWeight } = model.lexical;
        const extra = (coldWeight ? `, cold ${coldWeight}` : '') + (lastWeight ? `, last ${lastWeight}` : '');
        rows[`${model.kind} + lexical ${weight}${extra}`] = toAggregated(evaluate(model, split));
      } else rows[model.kind] = toAggregated(evaluate(model, split));
      console.log(resultsText(rows));
    }
    await save(model, values.out);
    console.error(`saved ${values.out}`);
    return 0;
  } catch (error) {
    console.error(`deltarec train: ${(error as Error).message}`);
    return 1;
  }
}

/**
 * The backtest inside the training data of a split written by `deltarec prepare`: the interactions it was prepared
 * from (its manifest names the file, columns and split options), before its threshold T, split again.
 */
async function innerBacktest(dir: string, split: PreparedSplit): Promise<PreparedSplit> {
  const meta = (await readSplitManifest(dir)).meta as {
    interactions?: string;
    read?: InteractionReadOptions;
    options?: Partial<SplitOptions>;
  };
  if (typeof meta.interactions !== 'string' || !meta.options) {
    throw new Error(
      `--lexical-weight auto and --model auto need the interactions the split was prepared from; ${dir}/manifest.json does not name them (prepare the split with deltarec prepare)`,
    );
  }
  const interactions = await readInteractions(meta.interactions, meta.read ?? {});
  const inner = backtestSplit(interactions, split, meta.options);
  console.error(
    `${inner.note}: ${inner.split.numItems} items (${inner.split.numWarm} warm), ${inner.split.test.targets.length} test cases`,
  );
  return inner.split;
}

/** A number in [0, 1] (--shrink, --perturb). */
function unitOption(value: string | undefined, name: string): number | undefined {
  const n = floatOption(value, name);
  if (n !== undefined && n > 1) throw new Error(`--${name} must be a number in [0, 1] (got '${value}')`);
  return n;
}

/** The backtest table of --lexical-weight auto and --model auto. */
export function lexicalChoiceText(choice: LexicalChoice): string {
  const b = choice.backtest;
  const lines = [
    `chosen on the backtest (${b.testCases} test cases, ${b.epochs} training epochs, ` +
      `${(b.seconds / 60).toFixed(1)} min): ${choice.model}, lexical weight ${choice.weight}`,
    '  model          weight  all NDCG@10  cold NDCG@10  warm NDCG@10',
  ];
  for (const r of choice.table) {
    const chosen = r.model === choice.model && r.weight === choice.weight;
    lines.push(
      `  ${r.model.padEnd(13)}  ${String(r.weight).padStart(6)}  ${r.ndcg10.toFixed(4).padStart(11)}  ` +
        `${r.cold.toFixed(4).padStart(12)}  ${r.warm.toFixed(4).padStart(12)}${chosen ? '  <- chosen' : ''}`,
    );
  }
  return lines.join('\n');
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
  const { encoder } = await loadArtifact(dir, { weights: false }); // the weights were read by load() above
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
