/** The built-in synthetic dataset: seeded, sized by options, with content signal, order signal and cold items. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { projectContent } from '../src/content/projection.js';
import { prepareSplit } from '../src/data/split.js';
import { generateSynthetic } from '../src/data/synthetic.js';
import { generateMusic, musicVectors } from '../src/data/synthetic-music.js';
import { generatePreset } from '../src/data/synthetic-presets.js';
import { buildContent } from '../src/eval/data.js';

/** Word-count vectors of title + description, L2-normalized, as maps. */
function bagsOfWords(texts: string[]): Map<string, number>[] {
  return texts.map((text) => {
    const bag = new Map<string, number>();
    for (const w of text.split(/\s+/)) if (w) bag.set(w, (bag.get(w) ?? 0) + 1);
    const norm = Math.sqrt([...bag.values()].reduce((a, v) => a + v * v, 0));
    for (const [w, v] of bag) bag.set(w, v / norm);
    return bag;
  });
}

function cosine(a: Map<string, number>, b: Map<string, number>): number {
  let s = 0;
  for (const [w, v] of a) s += v * (b.get(w) ?? 0);
  return s;
}

describe('synthetic dataset', () => {
  const options = { users: 1200, items: 600, topics: 12, seed: 11 };
  const data = generateSynthetic(options);
  const { interactions, catalog, truth } = data;

  test('is determined by the seed and sized by the options', () => {
    assert.deepEqual(generateSynthetic(options), data);
    const other = generateSynthetic({ ...options, seed: 12 });
    assert.notDeepEqual(other.interactions.items, interactions.items);
    assert.equal(catalog.ids.length, 600);
    assert.equal(interactions.userIds.ids.length, 1200);
    const mean = interactions.users.length / 1200;
    assert.ok(mean > 8 && mean < 11, `mean sequence length ${mean}`);
    const defaults = generateSynthetic();
    assert.equal(defaults.catalog.ids.length, 1000);
    assert.ok(defaults.interactions.users.length > 15000 && defaults.interactions.users.length < 25000);
    assert.deepEqual(Object.keys(catalog.fields), ['title', 'description', 'category']);
  });

  test('content identifies the topic (nearest topic centroid of word vectors)', () => {
    const bags = bagsOfWords(
      catalog.ids.map((_, i) => `${catalog.fields.title[i]} ${catalog.fields.description[i]}`),
    );
    const centroids = Array.from({ length: options.topics }, () => new Map<string, number>());
    bags.forEach((bag, i) => {
      const c = centroids[truth.itemTopic[i]];
      for (const [w, v] of bag) c.set(w, (c.get(w) ?? 0) + v);
    });
    let correct = 0;
    bags.forEach((bag, i) => {
      let best = -1;
      let bestScore = -Infinity;
      centroids.forEach((c, k) => {
        const norm = Math.sqrt([...c.values()].reduce((a, v) => a + v * v, 0));
        const score = cosine(bag, c) / norm;
        if (score > bestScore) [best, bestScore] = [k, score];
      });
      if (best === truth.itemTopic[i]) correct++;
    });
    assert.ok(correct / bags.length > 0.9, `topic accuracy from content ${correct / bags.length}`);
  });

  test('sequences carry content signal (same topic) and order signal beyond content (successor topic)', () => {
    const bags = bagsOfWords(
      catalog.ids.map((_, i) => `${catalog.fields.title[i]} ${catalog.fields.description[i]}`),
    );
    let pairs = 0;
    let same = 0;
    let successor = 0;
    let simSame = 0;
    let simSuccessor = 0;
    let simOther = 0;
    let other = 0;
    for (let k = 1; k < interactions.users.length; k++) {
      if (interactions.users[k] !== interactions.users[k - 1]) continue;
      const a = interactions.items[k - 1] - 1;
      const b = interactions.items[k] - 1;
      const ta = truth.itemTopic[a];
      const tb = truth.itemTopic[b];
      const sim = cosine(bags[a], bags[b]);
      pairs++;
      if (ta === tb) {
        same++;
        simSame += sim;
      } else if (truth.successor[ta] === tb) {
        successor++;
        simSuccessor += sim;
      } else {
        other++;
        simOther += sim;
      }
    }
    const chance = 1 / options.topics;
    assert.ok(same / pairs > 3 * chance, `next item in the same topic: ${same / pairs}`);
    assert.ok(successor / pairs > 0.4, `next item in the successor topic: ${successor / pairs}`);
    // Content similarity tells same-topic pairs apart, but not successor pairs from unrelated ones.
    assert.ok(simSame / same > 2 * (simOther / other), 'same-topic items are similar');
    assert.ok(
      Math.abs(simSuccessor / successor - simOther / other) < 0.05,
      'successor topics are not similar in content',
    );
    for (let k = 0; k < options.topics; k++) assert.notEqual(truth.successor[k], k);
  });

  test('a user keeps a style: within a topic the next item mostly shares it (its text names the style)', () => {
    let sameTopic = 0;
    let sameStyle = 0;
    for (let k = 1; k < interactions.users.length; k++) {
      if (interactions.users[k] !== interactions.users[k - 1]) continue;
      const a = interactions.items[k - 1] - 1;
      const b = interactions.items[k] - 1;
      if (truth.itemTopic[a] !== truth.itemTopic[b]) continue;
      sameTopic++;
      if (truth.itemStyle[a] === truth.itemStyle[b]) sameStyle++;
    }
    assert.ok(
      sameStyle / sameTopic > 0.3, // chance is 1/8; fresh items of other styles take part of the picks
      `same style among same-topic pairs: ${sameStyle / sameTopic}`,
    );
  });

  test("the topic and style survive the paper's projection: a cold item's nearest warm item shares them", () => {
    const split = prepareSplit(interactions);
    const fields = ['title', 'description'];
    const built = buildContent(split, { catalog }, { fields, dim: 128, fitOn: 'warm' });
    const d = 32;
    // Standardize + PCA to d + L2, fitted on warm items (the model's frozen content).
    const { vectors } = projectContent(built.content!, built.contentDim, split.numWarm, d);
    const row = new Map(catalog.ids.map((id, i) => [id, i]));
    const cell = (k: number) => {
      const i = row.get(split.itemIds[k])!;
      return truth.itemTopic[i] * 1000 + truth.itemStyle[i];
    };
    let same = 0;
    const cold = split.numItems - split.numWarm;
    for (let c = split.numWarm + 1; c <= split.numItems; c++) {
      let best = 0;
      let bestScore = -Infinity;
      for (let w = 1; w <= split.numWarm; w++) {
        let score = 0;
        for (let j = 0; j < d; j++) score += vectors[c * d + j] * vectors[w * d + j];
        if (score > bestScore) [best, bestScore] = [w, score];
      }
      if (cell(best) === cell(c)) same++;
    }
    // Chance is about 1 / (12 topics x 8 styles).
    assert.ok(cold > 30 && same / cold > 0.6, `${same} of ${cold} cold items`);
  });

  test('items keep being introduced, so cold items are targets in the test period', () => {
    const split = prepareSplit(interactions);
    const T = split.stats.threshold_timestamp!;
    const introducedAfterT = truth.introduced.filter((t) => t > T).length;
    assert.ok(introducedAfterT > 0, 'some items appear only after T');
    assert.ok(split.stats.cold_items > 0);
    assert.ok(
      split.stats.cold_test_share > 0.1 && split.stats.cold_test_share < 0.5,
      `cold share ${split.stats.cold_test_share}`,
    );
    assert.ok(split.stats.test_users > 100, `test users ${split.stats.test_users}`);
    // No item is used before it is introduced.
    for (let k = 0; k < interactions.users.length; k++) {
      assert.ok(interactions.timestamps![k] >= truth.introduced[interactions.items[k] - 1]);
    }
  });
});

describe('music-listening generator (the zvuk preset)', () => {
  const options = { users: 400, items: 8000, topics: 16, meanLength: 150, seed: 3 };
  const data = generateMusic(options);
  const { interactions, truth } = data;
  const n = interactions.users.length;
  /** Visits (previous item, item) of every consecutive pair of a user's plays (0-based item rows). */
  const forEachTransition = (visit: (a: number, b: number) => void) => {
    for (let k = 1; k < n; k++)
      if (interactions.users[k] === interactions.users[k - 1])
        visit(interactions.items[k - 1] - 1, interactions.items[k] - 1);
  };

  test('is determined by the seed and sized by the options', () => {
    assert.deepEqual(generateMusic(options), data);
    assert.notDeepEqual(generateMusic({ ...options, seed: 4 }).interactions.items, interactions.items);
    assert.equal(data.catalog.ids.length, 8000);
    assert.equal(interactions.userIds.ids.length, 400);
    assert.ok(n / 400 > 130 && n / 400 < 170, `mean length ${n / 400}`);
    const vectors = musicVectors(truth, 128, 3);
    assert.deepEqual(musicVectors(truth, 128, 3), vectors);
  });

  test('the zvuk preset keeps the paper shape: users, tracks, plays, mean length, 13% cold ground truth', () => {
    const { data: full, vectors } = generatePreset('zvuk', {});
    const x = full.interactions;
    assert.equal(x.userIds.ids.length, 9076);
    assert.equal(full.catalog.ids.length, 131085);
    assert.ok(x.users.length > 3.0e6 && x.users.length < 3.4e6, `plays ${x.users.length}`);
    assert.equal(vectors?.length, 131085 * 128);
    const mean = x.users.length / 9076;
    assert.ok(mean > 340 && mean < 375, `mean length ${mean}`);
    const stats = prepareSplit(x).stats;
    assert.ok(
      stats.cold_test_share > 0.11 && stats.cold_test_share < 0.15,
      `cold share ${stats.cold_test_share}`,
    );
  });

  test('item-level regularities: repeats, same-artist and album-order transitions, per-track successors', () => {
    let pairs = 0;
    let sameArtist = 0;
    let albumNext = 0;
    let successor = 0;
    forEachTransition((a, b) => {
      pairs++;
      if (truth.itemArtist[a] === truth.itemArtist[b]) sameArtist++;
      if (b === a + 1 && truth.itemAlbum[a] === truth.itemAlbum[b]) albumNext++;
      if (truth.successors.subarray(a * 3, a * 3 + 3).includes(b)) successor++;
    });
    const artists = truth.artistTopic.length;
    assert.ok(sameArtist / pairs > 0.3, `same artist ${sameArtist / pairs} (chance about ${1 / artists})`);
    assert.ok(albumNext / pairs > 0.15, `next track of the album ${albumNext / pairs}`);
    assert.ok(successor / pairs > 0.15, `one of the track's fixed successors ${successor / pairs}`);
    let repeats = 0;
    let played = new Set<number>();
    for (let k = 0; k < n; k++) {
      if (k > 0 && interactions.users[k] !== interactions.users[k - 1]) played = new Set();
      if (played.has(interactions.items[k])) repeats++;
      played.add(interactions.items[k]);
    }
    assert.ok(repeats / n > 0.15 && repeats / n < 0.6, `repeat share ${repeats / n}`);
  });

  test('popularity is heavy-tailed within a topic', () => {
    const plays = new Float64Array(8000);
    for (let k = 0; k < n; k++) plays[interactions.items[k] - 1]++;
    for (const topic of [0, 1, 2]) {
      const counts = Array.from(plays)
        .filter((_, i) => truth.itemTopic[i] === topic && truth.introduced[i] === truth.introduced[0])
        .sort((a, b) => b - a);
      const top = counts.slice(0, Math.ceil(counts.length / 20)).reduce((s, c) => s + c, 0);
      const total = counts.reduce((s, c) => s + c, 0);
      // Uniform popularity would give the top 5% of tracks about 5% of the plays.
      assert.ok(top / total > 0.2, `topic ${topic}: top 5% of tracks get ${top / total} of the plays`);
    }
  });

  test("cold tracks are new releases of known artists, played right after release, found by their vector's artist", () => {
    const split = prepareSplit(interactions);
    const vectors = musicVectors(truth, 128, 3);
    const row = (k: number) => Number(split.itemIds[k].slice(1)) - 1;
    const warmArtists = new Set<number>();
    for (let w = 1; w <= split.numWarm; w++) warmArtists.add(truth.itemArtist[row(w)]);
    const firstPlay = new Float64Array(8000).fill(Infinity);
    for (let k = 0; k < n; k++) {
      const i = interactions.items[k] - 1;
      firstPlay[i] = Math.min(firstPlay[i], interactions.timestamps![k]);
      assert.ok(interactions.timestamps![k] >= truth.introduced[i], 'no play before release');
    }
    // The distinct cold ground-truth tracks of the test cases.
    const coldTargets = [...new Set(split.test.targets.filter((_, c) => split.test.cold[c] === 1))];
    const cold = coldTargets.length;
    assert.ok(cold > 20 && split.stats.cold_test_share > 0.05, `${cold} cold ground-truth tracks`);
    let knownArtist = 0;
    let newRelease = 0;
    let soon = 0;
    let sameArtist = 0;
    for (const c of coldTargets) {
      const i = row(c);
      if (warmArtists.has(truth.itemArtist[i])) knownArtist++;
      if (truth.introduced[i] > truth.introduced[0]) newRelease++;
      if (firstPlay[i] - truth.introduced[i] < 0.05 * 365 * 86400) soon++;
      let best = -1;
      let bestScore = -Infinity;
      for (let w = 1; w <= split.numWarm; w++) {
        const j = row(w);
        let score = 0;
        for (let d = 0; d < 128; d++) score += vectors[i * 128 + d] * vectors[j * 128 + d];
        if (score > bestScore) [best, bestScore] = [j, score];
      }
      if (truth.itemArtist[best] === truth.itemArtist[i]) sameArtist++;
    }
    assert.ok(knownArtist / cold > 0.9, `cold tracks of an artist with warm tracks ${knownArtist / cold}`);
    assert.ok(
      newRelease / cold > 0.7,
      `cold ground-truth tracks released during the timeline ${newRelease / cold}`,
    );
    assert.ok(
      soon / newRelease > 0.5,
      `first played within the fresh window of release ${soon / newRelease}`,
    );
    assert.ok(
      sameArtist / cold > 0.8,
      `nearest warm track by vector of the same artist ${sameArtist / cold}`,
    );
  });
});
