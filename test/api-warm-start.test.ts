/**
 * Warm start (issue 13): a model trained on an earlier period (the backtest split: interactions before T) starts the
 * model of the later period. Rows are matched by item id, items cold before start from content, the kept projection
 * leaves old items' content rows where they were, and mismatches are refused with clear messages.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fit, load, save, type FitOptions, type FittedModel } from '../src/api.js';
import { validationNdcg } from '../src/eval/evaluate.js';
import { buildContent, backtestSplit } from '../src/eval/data.js';
import { changedSequences } from '../src/data/changed.js';
import { prepareSplit } from '../src/data/split.js';
import type { PreparedSplit } from '../src/data/types.js';
import { generateSynthetic } from '../src/data/synthetic.js';
import { SASRec, sasrecConfig } from '../src/model/sasrec.js';
import { warmStart } from '../src/model/warm-start.js';

const data = generateSynthetic({ users: 400, items: 150, topics: 6, seed: 9 });
const split = prepareSplit(data.interactions);
const inner = backtestSplit(data.interactions, split, {}).split;
// One text encoder for both periods (as `train --init-from` reuses the old model's encoder).
const outerContent = buildContent(split, { catalog: data.catalog }, { dim: 24, fitOn: 'warm' });
const encoder = outerContent.encoder!;
const innerContent = buildContent(inner, { catalog: data.catalog, encoder }, { dim: 24 });
const small = { d: 16, maxLength: 16, epochs: 1, patience: 1, handleSigint: false, onProgress: () => {} };

/** The old model of most warm starts here: content-delta trained 2 epochs on the inner (backtest) split. */
const oldContentDelta = () =>
  fit(inner, { ...small, epochs: 2, model: 'content-delta', content: innerContent.content! });

function sasrecOf(model: FittedModel): SASRec {
  return model.recommender as SASRec;
}

function row(a: Float32Array, i: number, width: number): Float32Array {
  return a.subarray(i * width, (i + 1) * width);
}

const oldIndex = (model: FittedModel) => new Map(model.itemIds.map((id, i) => [id, i]));

test('the two periods share items, some cold in the first are warm in the second, and some are new', () => {
  const before = oldIndex({ itemIds: inner.itemIds } as FittedModel);
  let formerlyCold = 0;
  let unseen = 0;
  for (let i = 1; i <= split.numItems; i++) {
    const j = before.get(split.itemIds[i]);
    if (j === undefined) unseen++;
    else if (i <= split.numWarm && j > inner.numWarm) formerlyCold++;
  }
  assert.ok(formerlyCold > 0 && unseen > 0, `${formerlyCold} formerly cold, ${unseen} unseen`);
});

test('backtest with the same validation users: the inner model never trains on an outer validation user', () => {
  const outerValidation = new Set(split.validation.users);
  const trainedOn = (users: readonly string[]) => users.filter((u) => outerValidation.has(u)).length;
  // The default inner split shuffles its users again: most outer validation users are inner training users.
  assert.ok(trainedOn(inner.trainUsers!) > outerValidation.size / 2, `${trainedOn(inner.trainUsers!)}`);
  const same = backtestSplit(data.interactions, split, {}, { sameValidationUsers: true });
  assert.equal(trainedOn(same.split.trainUsers!), 0);
  assert.ok(same.split.validation.users!.length > 0);
  assert.ok(same.split.validation.users!.every((u) => outerValidation.has(u)));
  // Only the choice of users changed: the same period, threshold and items.
  assert.equal(same.split.stats.threshold_timestamp, inner.stats.threshold_timestamp);
  assert.equal(same.split.numItems, inner.numItems);
  assert.match(same.note, /validation users: the full split's \(\d+ validation cases here\)/);
  assert.throws(
    () => prepareSplit(data.interactions, { protocol: 'leave-last-out', validationUsers: outerValidation }),
    /validationUsers needs the temporal protocol/,
  );
});

test('changedSequences keeps the new and the changed training sequences, matched by user and item ids', () => {
  const result = changedSequences(split, inner);
  const { train, trainUsers } = result.split;
  const items = (s: PreparedSplit, u: number) =>
    Array.from(s.train.items.subarray(s.train.offsets[u], s.train.offsets[u + 1]), (i) => s.itemIds[i]).join(
      ' ',
    );
  const before = new Map(inner.trainUsers!.map((user, u) => [user, items(inner, u)]));
  const after = new Map(split.trainUsers!.map((user, u) => [user, items(split, u)]));
  let changed = 0;
  let added = 0;
  for (const [user, sequence] of after) {
    if (!before.has(user)) added++;
    else if (before.get(user) !== sequence) changed++;
  }
  assert.deepEqual([result.changed, result.added], [changed, added]);
  assert.ok(changed > 0 && added > 0 && result.unchanged > 0, JSON.stringify(result));
  assert.equal(result.unchanged, split.trainUsers!.length - changed - added);
  assert.equal(trainUsers!.length, changed + added);
  assert.equal(train.offsets.length, changed + added + 1);
  trainUsers!.forEach((user, u) => {
    assert.equal(items(result.split, u), after.get(user), `sequence of ${user}`);
    assert.notEqual(before.get(user), after.get(user));
  });
  assert.equal(result.split.validation, split.validation, "validation and test are the split's own");
  assert.equal(changedSequences(split, split).split.train.offsets.length, 1, 'nothing changed since itself');
});

test('warmStart copies dense weights and learned rows by id; others keep their start', async () => {
  const old = await oldContentDelta();
  const oldModel = sasrecOf(old);
  const config = { ...oldModel.config, numItems: split.numWarm };
  const projected = new Float32Array((split.numWarm + 1) * 16).map((_, i) => (i < 16 ? 0 : Math.sin(i)));
  const fresh = new SASRec(config, projected);
  const result = warmStart(fresh, split.itemIds, oldModel, old.itemIds, old.numWarm);
  assert.deepEqual(fresh.params.flat, oldModel.params.flat);
  const before = oldIndex(old);
  let carried = 0;
  for (let i = 1; i <= split.numWarm; i++) {
    const j = before.get(split.itemIds[i]);
    const delta = row(fresh.items.weight!, i, 16);
    if (j !== undefined && j <= old.numWarm) {
      carried++;
      assert.deepEqual(delta, row(oldModel.items.weight!, j, 16), `row of ${split.itemIds[i]}`);
    } else
      assert.ok(
        delta.every((v) => v === 0),
        `item ${split.itemIds[i]} starts with a zero delta`,
      );
  }
  assert.equal(result.carried, carried);
  assert.ok(result.carried > 0 && result.formerlyCold > 0);
  assert.equal(result.carried + result.formerlyCold + result.unseen, split.numWarm);
  assert.ok(
    oldModel.items.weight!.some((v) => v !== 0),
    'the old model learned non-zero deltas (the check above means something)',
  );
  const denseOnly = new SASRec(config, projected);
  warmStart(denseOnly, split.itemIds, oldModel, old.itemIds, old.numWarm, { carryRows: false });
  assert.deepEqual(denseOnly.params.flat, oldModel.params.flat);
  assert.ok(
    denseOnly.items.weight!.every((v) => v === 0),
    'carryRows false: every item starts with a zero delta',
  );

  const other = new SASRec(
    sasrecConfig({ ...config, d: 8, ffWidth: 8 }),
    new Float32Array((split.numWarm + 1) * 8),
  );
  assert.throws(
    () => warmStart(other, split.itemIds, oldModel, old.itemIds, old.numWarm),
    /^Error: warm start: the old model's architecture differs \(d 16 -> 8, ffWidth 16 -> 8\)$/,
  );
});

test('shrink and perturb: 1 and 0 are the plain warm start; otherwise shrink x old + perturb x the new start', async () => {
  const old = await oldContentDelta();
  const oldModel = sasrecOf(old);
  const config = { ...oldModel.config, numItems: split.numWarm };
  const projected = new Float32Array((split.numWarm + 1) * 16).map((_, i) => (i < 16 ? 0 : Math.cos(i)));
  const start = () => new SASRec(config, projected);
  const plain = start();
  warmStart(plain, split.itemIds, oldModel, old.itemIds, old.numWarm);
  const identity = start();
  const result = warmStart(identity, split.itemIds, oldModel, old.itemIds, old.numWarm, {
    shrink: 1,
    perturb: 0,
  });
  assert.deepEqual(identity.params.flat, plain.params.flat);
  assert.deepEqual(identity.items.weight, plain.items.weight);
  assert.equal(result.shrink, 1);
  assert.equal(result.perturb, 0);

  const init = start(); // the new model's own initialization: the same seed gives the same start
  const mixed = start();
  warmStart(mixed, split.itemIds, oldModel, old.itemIds, old.numWarm, { shrink: 0.5, perturb: 0.25 });
  const expected = (o: number, s: number) => Math.fround(0.5 * o + 0.25 * s);
  assert.ok(init.params.flat.some((v, i) => v !== oldModel.params.flat[i]));
  mixed.params.flat.forEach((v, i) =>
    assert.equal(v, expected(oldModel.params.flat[i], init.params.flat[i]), `dense value ${i}`),
  );
  // A layer-norm gain starts at 1 in a new model: 0.5 x old + 0.25.
  const gamma = mixed.params.list.find((t) => t.name === 'final_ln.gamma')!.data;
  const oldGamma = oldModel.params.list.find((t) => t.name === 'final_ln.gamma')!.data;
  assert.equal(gamma[0], Math.fround(0.5 * oldGamma[0] + 0.25));
  const before = oldIndex(old);
  let shrunk = 0;
  for (let i = 1; i <= split.numWarm; i++) {
    const j = before.get(split.itemIds[i]);
    const delta = row(mixed.items.weight!, i, 16);
    if (j !== undefined && j <= old.numWarm) {
      // A new model's delta starts at zero, so a carried delta is only shrunk.
      const from = row(oldModel.items.weight!, j, 16);
      delta.forEach((v, k) => assert.equal(v, Math.fround(0.5 * from[k])));
      if (from.some((v) => v !== 0)) shrunk++;
    } else
      assert.ok(
        delta.every((v) => v === 0),
        `item ${split.itemIds[i]} keeps its start`,
      );
  }
  assert.ok(shrunk > 0);

  // Through fit: the same start (lr 1e-12 moves nothing measurably in the one epoch).
  const viaFit = await fit(split, {
    ...small,
    model: 'content-delta',
    content: outerContent.content!,
    initFrom: old,
    initItems: 'old',
    shrink: 0.5,
    perturb: 0.25,
    lr: 1e-12,
  });
  assert.deepEqual(viaFit.warmStart, { ...result, shrink: 0.5, perturb: 0.25, rows: 'old' });
  const b = sasrecOf(viaFit).params.flat;
  assert.ok(b.every((v, i) => Math.abs(v - mixed.params.flat[i]) < 1e-6));

  assert.throws(
    () => warmStart(start(), split.itemIds, oldModel, old.itemIds, old.numWarm, { shrink: 1.5 }),
    /^Error: warm start: shrink must be a number in \[0, 1\] \(got 1.5\)$/,
  );
  assert.throws(
    () => warmStart(start(), split.itemIds, oldModel, old.itemIds, old.numWarm, { perturb: -0.1 }),
    /^Error: warm start: perturb must be a number in \[0, 1\] \(got -0.1\)$/,
  );
  const base = { ...small, model: 'content-delta' as const, content: outerContent.content! };
  await assert.rejects(
    fit(split, { ...base, shrink: 0.5 }),
    /^Error: fit: shrink applies to a warm start \(initFrom\)$/,
  );
  await assert.rejects(
    fit(split, { ...base, initFrom: old, perturb: Number.NaN }),
    /^Error: fit: perturb must be a number in \[0, 1\] \(got NaN\)$/,
  );
});

for (const kind of ['content-delta', 'content-init', 'content-map', 'sasrec'] as const) {
  test(`fit with initFrom (${kind}): projection kept, old items' rows carried, trained once more`, async () => {
    const content = (c: typeof innerContent) => (kind === 'sasrec' ? {} : { content: c.content! });
    const old = await fit(inner, { ...small, epochs: 2, model: kind, ...content(innerContent) });
    const options: FitOptions = {
      ...small,
      model: kind,
      ...content(outerContent),
      initFrom: old,
      initItems: 'old',
    };
    const warm = await fit(split, { ...options, lr: 1e-12 });
    assert.ok(warm.warmStart && warm.warmStart.carried > 0);
    assert.equal(warm.training!.history.length, 1);
    if (kind !== 'sasrec')
      assert.equal(warm.recommender.numItems, split.numItems, 'new items appended as cold');
    assert.equal(warm.projection, old.projection, 'the old projection is kept');
    const a = sasrecOf(old);
    const b = sasrecOf(warm);
    const before = oldIndex(old);
    // lr 1e-12: the one training epoch moves nothing measurably, so the start is what is compared.
    const close = (x: Float32Array, y: Float32Array) => x.every((v, i) => Math.abs(v - y[i]) < 1e-6);
    assert.ok(close(b.params.flat, a.params.flat), 'dense weights carried over');
    const ea = a.itemEmbeddings();
    const eb = b.itemEmbeddings();
    for (let i = 1; i <= split.numWarm; i++) {
      const j = before.get(split.itemIds[i]);
      if (j !== undefined && j <= old.numWarm)
        assert.ok(
          close(row(eb, i, 16), row(ea, j, 16)),
          `${kind}: item ${split.itemIds[i]} scores as before`,
        );
    }
    if (kind === 'content-map') {
      assert.ok(close(b.items.mapWeight!, a.items.mapWeight!), 'the learned map is kept');
      const refit = await fit(split, { ...options, refitProjection: true, lr: 1e-12 });
      assert.ok(
        !close(sasrecOf(refit).items.mapWeight!, a.items.mapWeight!),
        'refitProjection starts the map anew',
      );
    } else if (kind !== 'sasrec') {
      if (kind === 'content-delta') {
        // The default for a model with a delta: only the dense weights are carried.
        const fresh = await fit(split, { ...options, initItems: undefined, lr: 1e-12 });
        assert.equal(fresh.warmStart!.rows, 'fresh');
        assert.ok(
          close(sasrecOf(fresh).params.flat, a.params.flat),
          'initItems fresh: dense weights carried',
        );
        assert.ok(
          sasrecOf(fresh).items.weight!.every((v) => Math.abs(v) < 1e-6),
          'initItems fresh: every delta starts at zero',
        );
      }
      const refit = await fit(split, { ...options, refitProjection: true });
      assert.notEqual(refit.projection, old.projection);
      assert.notDeepEqual(refit.projection!.mean, old.projection!.mean);
    }
  });
}

test('fit with initFrom refuses another kind, another architecture, knn and a content of another width', async () => {
  const old = await fit(inner, { ...small, model: 'content-delta', content: innerContent.content! });
  const base = { ...small, content: outerContent.content!, initFrom: old };
  await assert.rejects(
    fit(split, { ...base, model: 'content-init' }),
    /^Error: fit: initFrom is a 'content-delta' model; a warm start needs the same kind \('content-init'\)$/,
  );
  await assert.rejects(
    fit(split, { ...base, model: 'content-delta', blocks: 1 }),
    /^Error: warm start: the old model's architecture differs \(blocks 2 -> 1\)$/,
  );
  await assert.rejects(
    fit(split, { ...base, model: 'knn' }),
    /^Error: fit: knn is not trained; initFrom applies to SASRec models$/,
  );
  const other = buildContent(split, { catalog: data.catalog }, { dim: 20, fitOn: 'warm' });
  await assert.rejects(
    fit(split, { ...base, model: 'content-delta', content: other.content! }),
    /^Error: fit: content has 20 dims but initFrom's projection takes 24 \(encode the items with initFrom's text encoder, or use refitProjection\)$/,
  );
});

test('fit passes lrScales, replay and ema to training: frozen dense weights, the replayed epoch, the saved average', async () => {
  const old = await oldContentDelta();
  const options: FitOptions = {
    ...small,
    model: 'content-delta',
    content: outerContent.content!,
    initFrom: old,
  };
  const frozen = await fit(split, { ...options, lrScales: { dense: 0 } });
  assert.deepEqual(
    sasrecOf(frozen).params.flat,
    sasrecOf(old).params.flat,
    'dense weights exactly as carried',
  );
  assert.ok(
    sasrecOf(frozen).items.weight!.some((v) => v !== 0),
    'the deltas (started at zero) trained',
  );
  const changed = changedSequences(split, inner);
  const replayed = await fit(split, { ...options, replay: { always: changed.mask, fraction: 0.5 } });
  const usable = (flags: number) => {
    let n = 0;
    for (let s = 0; s < changed.mask.length; s++)
      if (changed.mask[s] === flags && split.train.offsets[s + 1] - split.train.offsets[s] >= 2) n++;
    return n;
  };
  assert.equal(replayed.training!.sequences, usable(1) + Math.round(0.5 * usable(0)));
  const dir = await mkdtemp(join(tmpdir(), 'deltarec-ema-fit-'));
  try {
    const averaged = await fit(split, { ...options, epochs: 2, patience: 2, ema: 0.9 });
    await save(averaged, join(dir, 'model'));
    const loaded = await load(join(dir, 'model'));
    assert.equal(
      validationNdcg(loaded.recommender, split, { maxLength: loaded.maxLength }),
      averaged.training!.bestMetric,
      'the saved model is the validated average',
    );
    const plain = await fit(split, { ...options, epochs: 2, patience: 2 });
    assert.deepEqual(
      averaged.training!.history.map((h) => h.loss),
      plain.training!.history.map((h) => h.loss),
      'the same training losses',
    );
    assert.notDeepEqual(sasrecOf(averaged).params.flat, sasrecOf(plain).params.flat);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
