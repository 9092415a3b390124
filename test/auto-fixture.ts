/**
 * Shared by the 'auto' choice tests (lexical weight, model): generated data where an item's text names its topic and
 * the next item mostly stays in the topic, and the options of a quick fit whose choice is made on a backtest inside
 * the training data (content and sparse text rows fitted on each period).
 */
import type { FitOptions } from '../src/api.js';
import { prepareSplit } from '../src/data/split.js';
import { generateSynthetic, type SyntheticDataset } from '../src/data/synthetic.js';
import type { PreparedSplit } from '../src/data/types.js';
import { backtestSplit, buildContent, type ContentConfig } from '../src/eval/data.js';

export function topicTextData(): SyntheticDataset {
  return generateSynthetic({
    users: 700,
    items: 160,
    topics: 8,
    seed: 5,
    stayProbability: 0.9,
    successorProbability: 0.05,
  });
}

/** The split of `data` and quick fit options choosing among `grid` weights on its backtest; the test sets `model`. */
export function autoFitOptions(
  data: SyntheticDataset,
  grid: number[],
): { split: PreparedSplit; o: Omit<FitOptions, 'model'> } {
  const split = prepareSplit(data.interactions);
  const inner = backtestSplit(data.interactions, split, {}).split;
  const contentOptions: ContentConfig = { fields: ['title', 'description'], dim: 16, fitOn: 'warm' };
  const outer = buildContent(split, { catalog: data.catalog }, contentOptions);
  const innerContent = buildContent(inner, { catalog: data.catalog }, contentOptions);
  const o: Omit<FitOptions, 'model'> = {
    d: 16,
    maxLength: 16,
    epochs: 3,
    patience: 2,
    handleSigint: false,
    onProgress: () => {},
    content: outer.content!,
    lexicalRows: outer.lexical!,
    lexicalGrid: grid,
    lexicalBacktest: { split: inner, content: innerContent.content!, lexicalRows: innerContent.lexical! },
  };
  return { split, o };
}
