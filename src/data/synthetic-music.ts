/**
 * A music-listening generator (the `zvuk` preset, synthetic-presets.ts): a catalog of genres (topics), artists and
 * albums, audio-like track vectors, and listening histories with the item-level regularities of real listening.
 *
 * Catalog: each artist belongs to one topic and has albums of several tracks; a track is one album row. Popularity
 * is heavy-tailed at two levels: artists within a topic by Zipf rank, tracks within an artist by Zipf rank.
 * Every artist's first album exists from the start; a share of the later albums are new releases during the
 * timeline (the cold tracks).
 *
 * Next play after track p (one branch per play, probabilities in MusicOptions):
 *  - repeat: a track the user played before (half the time one of the last 20, else any earlier
 *    one);
 *  - album: the track after p on its album;
 *  - successor: one of p's few fixed successors (same topic, chosen once per track by popularity; weighted
 *    0.6 / 0.3 / 0.1): an item-specific transition that the vectors do not show;
 *  - artist: another track of p's artist;
 *  - topic: a track of p's topic (artist by popularity);
 *  - otherwise a jump: half the time back to the artist of an earlier play, else a track of one of the user's
 *    1-5 favourite topics (topics weighted by Zipf popularity).
 * Whenever an artist's or a topic's track is drawn and there is an album released within `freshWindow` before, the
 * draw is from such new releases with probability `freshProbability` (new releases get their plays right after
 * release; the defaults make about 13% of the test ground truth cold under the protocol at the preset's size).
 *
 * Vectors (musicVectors): topic, artist and album directions plus noise, so a track's nearest content neighbours
 * are its album and artist, and a cold track of a known artist is predictable from its vector.
 */
import { Random } from '../util/random.js';
import { makeIdMap } from './intern.js';
import { GeneratedLog, ItemGroups } from './synthetic.js';
import type { Catalog, Interactions } from './types.js';

export interface MusicOptions {
  users: number;
  items: number;
  topics: number;
  seed: number;
  /** Mean plays per user (each user has at least 3). */
  meanLength: number;
  /** Mean tracks per album and albums per artist. */
  tracksPerAlbum: number;
  albumsPerArtist: number;
  /** Zipf exponents of artist popularity within a topic and of track popularity within an artist. */
  artistZipf: number;
  trackZipf: number;
  /** Branch probabilities of the next play (the rest is a jump). */
  repeatProbability: number;
  albumProbability: number;
  successorProbability: number;
  artistProbability: number;
  topicProbability: number;
  /** Fixed successors per track. */
  successors: number;
  /** Share of every artist's later albums (all but the first) released during the timeline. */
  newAlbumShare: number;
  /** P(draw from an artist's new release) while it is within freshWindow (timeline fraction) of its release. */
  freshProbability: number;
  freshWindow: number;
  startTime: number;
  days: number;
}

export const DEFAULT_MUSIC_OPTIONS: MusicOptions = {
  users: 9076,
  items: 131085,
  topics: 256,
  seed: 0,
  meanLength: 357,
  tracksPerAlbum: 10,
  albumsPerArtist: 3,
  artistZipf: 0.8,
  trackZipf: 0.7,
  repeatProbability: 0.1,
  albumProbability: 0.25,
  successorProbability: 0.25,
  artistProbability: 0.15,
  topicProbability: 0.1,
  successors: 3,
  newAlbumShare: 0.55,
  freshProbability: 0.65,
  freshWindow: 0.05,
  startTime: 1640995200, // 2022-01-01
  days: 365,
};

const SUCCESSOR_WEIGHTS = [0.6, 0.3, 0.1];

export interface MusicDataset {
  interactions: Interactions;
  /** Track ids with their artist and album names. */
  catalog: Catalog;
  truth: {
    itemTopic: Int32Array; // per catalog row
    itemArtist: Int32Array;
    itemAlbum: Int32Array;
    artistTopic: Int32Array; // per artist
    /** successors[i * s + j]: track i's j-th fixed successor. */
    successors: Int32Array;
    introduced: Float64Array; // per catalog row, unix seconds
  };
}

/** Zipf weights 1 / (rank + 1)^exponent for ranks in a random order. */
function zipfWeights(random: Random, count: number, exponent: number): Float64Array {
  const order = random.shuffle(Int32Array.from({ length: count }, (_, i) => i));
  return Float64Array.from(order, (rank) => 1 / (rank + 1) ** exponent);
}

/** Generates the dataset. Everything is determined by the options (seed included). */
export function generateMusic(options: Partial<MusicOptions> = {}): MusicDataset {
  const o: MusicOptions = { ...DEFAULT_MUSIC_OPTIONS, ...options };
  if (o.users < 1 || o.topics < 2 || o.items < 2 * o.topics) {
    throw new RangeError('music data needs users >= 1, topics >= 2 and items >= 2 x topics');
  }
  const random = new Random(o.seed);
  const K = o.topics;
  const n = o.items;

  // Catalog: artists (topic, albums), albums (tracks, release time); track rows are contiguous per album.
  const itemTopic = new Int32Array(n);
  const itemArtist = new Int32Array(n);
  const itemAlbum = new Int32Array(n);
  const intro = new Float64Array(n);
  const artistTopicList: number[] = [];
  let albums = 0;
  for (let i = 0; i < n;) {
    const artist = artistTopicList.length;
    const topic = artist < K ? artist : random.nextInt(K); // every topic has an artist
    artistTopicList.push(topic);
    const albumCount = 1 + Math.floor(-Math.log(1 - random.nextFloat()) * (o.albumsPerArtist - 1));
    for (let b = 0; b < albumCount && i < n; b++, albums++) {
      const released = b > 0 && random.nextFloat() < o.newAlbumShare ? random.nextFloat() : 0;
      const tracks = Math.max(2, Math.round(o.tracksPerAlbum * (0.5 + random.nextFloat())));
      for (let j = 0; j < tracks && i < n; j++, i++) {
        itemTopic[i] = topic;
        itemArtist[i] = artist;
        itemAlbum[i] = albums;
        intro[i] = released;
      }
    }
  }
  const A = artistTopicList.length;
  const artistTopic = Int32Array.from(artistTopicList);

  // Popularity: Zipf over artists within a topic times Zipf over tracks within an artist.
  const artistWeight = new Float64Array(A);
  const topicArtists: number[][] = Array.from({ length: K }, () => []);
  for (let a = 0; a < A; a++) topicArtists[artistTopic[a]].push(a);
  for (const list of topicArtists) {
    const w = zipfWeights(random, list.length, o.artistZipf);
    list.forEach((a, r) => (artistWeight[a] = w[r]));
  }
  const popularity = new Float64Array(n);
  for (let first = 0; first < n;) {
    let end = first;
    while (end < n && itemArtist[end] === itemArtist[first]) end++;
    const w = zipfWeights(random, end - first, o.trackZipf);
    for (let i = first; i < end; i++) popularity[i] = artistWeight[itemArtist[first]] * w[i - first];
    first = end;
  }
  const byTopic = new ItemGroups(itemTopic, K, popularity, intro);
  const byArtist = new ItemGroups(itemArtist, A, popularity, intro);

  // Fixed successors: tracks of the same topic by popularity (popular tracks are many tracks' successors).
  const s = o.successors;
  const successors = new Int32Array(n * s);
  for (let i = 0; i < n; i++) {
    const k = itemTopic[i];
    for (let j = 0; j < s; j++) {
      let next = i;
      for (let attempt = 0; attempt < 4 && next === i; attempt++)
        next = byTopic.draw(random, k, byTopic.start[k], byTopic.start[k + 1]);
      successors[i * s + j] = next;
    }
  }
  const successorWeights = Float64Array.from({ length: s }, (_, j) => SUCCESSOR_WEIGHTS[j] ?? 0.1);
  const topicWeight = zipfWeights(random, K, 0.7);

  // A track of artist a available at t: from its new release (within freshWindow) with freshProbability.
  const drawArtist = (a: number, t: number, previous: number): number => {
    if (random.nextFloat() < o.freshProbability) {
      const fresh = byArtist.drawAvailable(random, a, t, previous, o.freshWindow, false);
      if (fresh >= 0) return fresh;
    }
    return byArtist.drawAvailable(random, a, t, previous, null, false);
  };
  // A track of topic k: a track by popularity fixes the artist, then the artist's draw (new releases first).
  const drawTopic = (k: number, t: number, previous: number): number => {
    let track = -1;
    if (random.nextFloat() < o.freshProbability)
      track = byTopic.drawAvailable(random, k, t, previous, o.freshWindow, false);
    if (track < 0) track = byTopic.drawAvailable(random, k, t, previous, null, false);
    if (track < 0) return -1;
    const item = drawArtist(itemArtist[track], t, previous);
    return item >= 0 ? item : track;
  };

  const log = new GeneratedLog(Math.ceil(o.users * o.meanLength * 1.2) + 1024);
  const span = o.days * 86400;
  const extraMean = Math.max(0, o.meanLength - 3);
  // Cumulative branch probabilities: repeat, album, successor, artist, topic (the rest is a jump).
  const cut: number[] = [];
  for (const p of [
    o.repeatProbability,
    o.albumProbability,
    o.successorProbability,
    o.artistProbability,
    o.topicProbability,
  ])
    cut.push((cut.at(-1) ?? 0) + p);
  const favourites = new Int32Array(5);
  for (let u = 0; u < o.users; u++) {
    const length = 3 + (extraMean > 0 ? Math.floor(-Math.log(1 - random.nextFloat()) * extraMean) : 0);
    const gaps = new Float64Array(length);
    let total = 0;
    for (let j = 1; j < length; j++) total += gaps[j] = -Math.log(1 - random.nextFloat()) * 0.025;
    const scale = total > 0.9 ? 0.9 / total : 1;
    let t = random.nextFloat() * (1 - total * scale);
    const favouriteCount = 1 + random.nextInt(favourites.length);
    for (let f = 0; f < favouriteCount; f++) favourites[f] = random.nextWeighted(topicWeight);
    const first = log.size;
    let previous = -1;
    for (let j = 0; j < length; j++) {
      t += gaps[j] * scale;
      const played = log.size - first;
      const r = j === 0 ? 1 : random.nextFloat();
      let item = -1;
      if (r < cut[0] && played > 1) {
        // 2 or more plays back (the previous one would be a consecutive duplicate).
        const reach = random.nextFloat() < 0.5 ? Math.min(19, played - 1) : played - 1;
        const back = 2 + random.nextInt(reach);
        item = log.item(log.size - back) - 1;
      } else if (r < cut[1]) {
        if (previous + 1 < n && itemAlbum[previous + 1] === itemAlbum[previous]) item = previous + 1;
      } else if (r < cut[2]) {
        const next = successors[previous * s + random.nextWeighted(successorWeights)];
        if (intro[next] <= t) item = next;
      } else if (r < cut[3]) {
        item = drawArtist(itemArtist[previous], t, previous);
      } else if (r < cut[4]) {
        item = drawTopic(itemTopic[previous], t, previous);
      }
      if (item < 0 || item === previous) {
        // A jump: half the time back to the artist of an earlier play, else a track of a favourite topic.
        if (played > 0 && random.nextFloat() < 0.5) {
          item = drawArtist(itemArtist[log.item(first + random.nextInt(played)) - 1], t, previous);
        }
        if (item < 0) item = drawTopic(favourites[random.nextInt(favouriteCount)], t, previous);
        if (item < 0) continue; // nothing of the topic is released yet (tiny catalogs only)
      }
      previous = item;
      log.push(u, item + 1, o.startTime + Math.floor(t * span));
    }
  }

  const itemIds = Array.from({ length: n }, (_, i) => `i${i + 1}`);
  const userIds = Array.from({ length: o.users }, (_, u) => `u${u + 1}`);
  const source = `synthetic-music(seed=${o.seed})`;
  return {
    interactions: {
      ...log.columns(),
      ratings: null,
      userIds: makeIdMap(userIds, false),
      itemIds: makeIdMap(itemIds, true),
      source,
    },
    catalog: {
      ids: itemIds,
      fields: {
        artist: Array.from(itemArtist, (a) => `artist${a + 1}`),
        album: Array.from(itemAlbum, (b) => `album${b + 1}`),
      },
      source,
    },
    truth: {
      itemTopic,
      itemArtist,
      itemAlbum,
      artistTopic,
      successors,
      introduced: Float64Array.from(intro, (x) => o.startTime + Math.floor(x * span)),
    },
  };
}

/**
 * Unit-norm "audio" vectors (items x dim): the sum of a topic direction (weight 0.6), an artist direction (0.8), an
 * album direction (0.4) and noise (norm about 1), normalized; the directions are random unit vectors. Expected
 * cosines: about 0.55 within an album, 0.46 within an artist, 0.17 within a topic, 0 across topics.
 */
export function musicVectors(truth: MusicDataset['truth'], dim: number, seed: number): Float32Array {
  const rng = new Random(seed ^ 0x3d5a2b17);
  const directions = (count: number) => {
    const out = new Float64Array(count * dim);
    for (let r = 0; r < count; r++) {
      let s = 0;
      for (let j = 0; j < dim; j++) s += (out[r * dim + j] = rng.nextGaussian()) ** 2;
      for (let j = 0; j < dim; j++) out[r * dim + j] /= Math.sqrt(s);
    }
    return out;
  };
  const n = truth.itemTopic.length;
  const topic = directions(truth.artistTopic.reduce((m, k) => Math.max(m, k + 1), 0));
  const artist = directions(truth.artistTopic.length);
  const album = directions(n > 0 ? truth.itemAlbum[n - 1] + 1 : 0);
  const out = new Float32Array(n * dim);
  const row = new Float64Array(dim);
  const noise = 1 / Math.sqrt(dim);
  for (let i = 0; i < n; i++) {
    const k = truth.itemTopic[i] * dim;
    const a = truth.itemArtist[i] * dim;
    const b = truth.itemAlbum[i] * dim;
    let s = 0;
    for (let j = 0; j < dim; j++) {
      const x = 0.6 * topic[k + j] + 0.8 * artist[a + j] + 0.4 * album[b + j] + noise * rng.nextGaussian();
      s += (row[j] = x) ** 2;
    }
    const inv = 1 / Math.sqrt(s);
    for (let j = 0; j < dim; j++) out[i * dim + j] = row[j] * inv;
  }
  return out;
}
