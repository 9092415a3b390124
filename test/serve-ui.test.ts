/**
 * End-to-end tests of the explorer page (`deltarec serve --ui`) in headless Chromium (Debian's `chromium` package,
 * driven by playwright-core): search, history, recommendations equal to the API's, the lexical term of a fused model,
 * an item added through the form and recommended, two models side by side, a screenshot. Skipped, with a message,
 * where /usr/bin/chromium does not exist.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, statSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { BrowserContext, Page } from 'playwright-core';
import { BROWSER_SKIP, launchBrowser, SCREENSHOTS } from './browser.js';
import { run as trainCommand } from '../src/cli/commands/train.js';
import { prepareSplit } from '../src/data/split.js';
import { saveSplit } from '../src/data/store.js';
import { generateSynthetic } from '../src/data/synthetic.js';
import { loadLexicalFusion } from '../src/model/fusion.js';
import { ContentKNN } from '../src/model/knn.js';

const CLI = new URL('../src/cli/cli.ts', import.meta.url).pathname;

/** A small picture as a data URI (the catalog's `image` field), one colour per item. */
function picture(i: number): string {
  const svg = `<svg xmlns='http://www.w3.org/2000/svg' width='40' height='40'><rect width='40' height='40' fill='hsl(${(i * 47) % 360} 60% 60%)'/></svg>`;
  return `data:image/svg+xml;base64,${Buffer.from(svg).toString('base64')}`;
}

function startServer(args: string[]): Promise<{ child: ChildProcess; base: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', CLI, 'serve', ...args, '--port', '0'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const match = /explorer at (http:\/\/127\.0\.0\.1:\d+)\//.exec(output);
      if (match) resolve({ child, base: match[1] });
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.on('exit', (code) => reject(new Error(`server exited with ${code} before listening:\n${output}`)));
  });
}

async function post<T>(url: string, body: unknown): Promise<T> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  assert.ok(response.ok, `${url}: ${response.status} ${await response.clone().text()}`);
  return (await response.json()) as T;
}

/** Ids, scores and shown lexical terms of one model's list on the page, after the page's last refresh. */
async function shownList(page: Page, model: number) {
  return page.$$eval(`section.model[data-model="${model}"] li.item`, (rows) =>
    rows.map((row) => ({
      id: row.getAttribute('data-id')!,
      score: Number(row.querySelector('.score')!.getAttribute('data-score')),
      terms: row.querySelector('.terms')?.textContent ?? null,
      badge: row.querySelector('.badge')?.textContent ?? null,
      title: row.querySelector('.title')!.textContent,
      image: row.querySelector('img')?.getAttribute('src') ?? null,
    })),
  );
}

/** Waits for the page to finish the refresh that follows an action. */
async function refreshed(page: Page, action: () => Promise<void>): Promise<void> {
  const before = await page.evaluate(() => document.body.dataset.ready ?? '');
  await action();
  await page.waitForFunction((b) => (document.body.dataset.ready ?? '') !== b, before);
}

test('serve: several models, --items and the explorer go together', async () => {
  const { run } = await import('../src/cli/commands/serve.js');
  const errors: string[] = [];
  const error = console.error;
  console.error = (...a: unknown[]) => void errors.push(a.join(' '));
  try {
    assert.equal(await run(['--model', 'a', '--model', 'b']), 2);
    assert.equal(await run(['--model', 'a', '--items', 'items.csv']), 2);
    assert.equal(await run(['--ui', '--model', 'a', '--model', 'b', '--catalog', 'c.log']), 2);
  } finally {
    console.error = error;
  }
  assert.match(errors[0], /several --model directories .* add --ui/);
  assert.match(errors[1], /--items is the catalog the explorer page shows; add --ui/);
  assert.match(errors[2], /--catalog names the log of one model/);
});

describe('explorer (serve --ui) with two models', { timeout: 300_000 }, () => {
  let root = '';
  let server: ChildProcess | null = null;
  let base = '';
  let context: BrowserContext | null = null;
  let profile = '';
  let page: Page;
  let catalog: ReturnType<typeof generateSynthetic>['catalog'];
  const models = { delta: '', fused: '' };

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'deltarec-ui-'));
    const data = generateSynthetic({ users: 400, items: 200, topics: 8, seed: 7 });
    catalog = data.catalog;
    const split = join(root, 'split');
    await saveSplit(split, prepareSplit(data.interactions));
    const items = join(root, 'items.csv');
    const lines = ['item_id,title,description,image'];
    catalog.ids.forEach((id, i) =>
      lines.push(`${id},${catalog.fields.title[i]},${catalog.fields.description[i]},"${picture(i)}"`),
    );
    await writeFile(items, lines.join('\n') + '\n');
    models.delta = join(root, 'delta');
    models.fused = join(root, 'fused');
    const common = [
      '--split',
      split,
      '--items',
      items,
      '--fields',
      'title,description',
      '--content-dim',
      '32',
    ];
    for (const [out, extra] of [
      [models.delta, []],
      [models.fused, ['--lexical-weight', '2']],
    ] as const) {
      const quiet = [console.log, console.error];
      const write = process.stderr.write;
      console.log = console.error = () => {};
      process.stderr.write = () => true; // the trainer's epoch lines
      try {
        const code = await trainCommand([
          ...common,
          ...extra,
          ...['--model', 'content-delta', '--d', '16', '--max-length', '16', '--epochs', '3', '--out', out],
        ]);
        assert.equal(code, 0, `training ${out}`);
      } finally {
        [console.log, console.error] = quiet;
        process.stderr.write = write;
      }
    }
    const started = await startServer([
      '--ui',
      '--model',
      models.delta,
      '--model',
      models.fused,
      '--items',
      items,
    ]);
    server = started.child;
    base = started.base;
  });

  after(async () => {
    server?.kill('SIGTERM');
    if (root) await rm(root, { recursive: true, force: true });
  });

  test('routes: models, bounded search, item details, the per-model prefix, clear errors', async () => {
    const info = await (await fetch(`${base}/ui/api/models`)).json();
    assert.deepEqual(
      info.models.map((m: { name: string; lexical_weight: number | null; text_fields: string[] }) => [
        m.name,
        m.lexical_weight,
        m.text_fields,
      ]),
      [
        ['delta', null, ['title', 'description']],
        ['fused', 2, ['title', 'description']],
      ],
    );
    assert.deepEqual(info.fields, ['title', 'description', 'image']);
    const all = await (await fetch(`${base}/ui/api/search?q=&limit=1000`)).json();
    assert.equal(all.items.length, 50, 'at most 50 results');
    const long = await fetch(`${base}/ui/api/search?q=${'x'.repeat(300)}`);
    assert.equal(long.status, 400);
    assert.match((await long.json()).message, /'q' is longer than 256/);
    const details = await (await fetch(`${base}/ui/api/items?model=1&ids=i3&ids=nope`)).json();
    assert.deepEqual(
      details.items.map((d: { id: string; known: boolean; lexical: null }) => [d.id, d.known, d.lexical]),
      [
        ['i3', true, null],
        ['nope', false, null],
      ],
    );
    // Ids are passed as repeated parameters, so an id may hold a comma.
    await post(`${base}/items`, { id: 'a,b', fields: { title: catalog.fields.title[5] } });
    const comma = await (await fetch(`${base}/ui/api/items?ids=${encodeURIComponent('a,b')}`)).json();
    assert.deepEqual(
      comma.items.map((d: { id: string; known: boolean; cold: boolean }) => [d.id, d.known, d.cold]),
      [['a,b', true, true]],
    );
    const tooMany = await fetch(`${base}/ui/api/items?ids=i1${'&ids=i1'.repeat(1000)}`);
    assert.equal(tooMany.status, 400);
    assert.equal((await fetch(`${base}/ui/api/items?model=7&ids=i1`)).status, 404);
    assert.equal((await fetch(`${base}/ui/api/items?ids=${'x'.repeat(257)}`)).status, 400);
    assert.equal((await fetch(`${base}/ui/api/models/7/health`)).status, 404);
    const health = await (await fetch(`${base}/ui/api/models/1/health`)).json();
    assert.equal(health.status, 'ok');
    // The prefix answers with the model's own validation.
    const bad = await fetch(`${base}/ui/api/models/1/recommend`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ items: ['i1'], k: 0 }),
    });
    assert.equal(bad.status, 400);
    assert.match((await bad.json()).message, /body\.k must be >= 1/);
  });

  describe('in headless Chromium', { skip: BROWSER_SKIP }, () => {
    before(async () => {
      ({ context, profile } = await launchBrowser());
      page = await context.newPage();
      await page.goto(`${base}/`);
      await page.waitForSelector('#status:has-text("2 model(s)")');
    });

    after(async () => {
      await context?.close();
      if (profile) await rm(profile, { recursive: true, force: true });
    });

    test('search finds items by title and by id, with their catalog fields and picture', async () => {
      const title = catalog.fields.title[41];
      await page.fill('#search', title);
      await page.waitForSelector(`#search-results li[data-id="${catalog.ids[41]}"]`);
      const shown = await page.$$eval('#search-results li.item', (rows) =>
        rows.map((r) => ({ id: r.getAttribute('data-id'), title: r.querySelector('.title')!.textContent })),
      );
      assert.ok(
        shown.every((r) => r.title!.includes(title)),
        JSON.stringify(shown),
      );
      const image = await page.getAttribute(`#search-results li[data-id="${catalog.ids[41]}"] img`, 'src');
      assert.equal(image, picture(41));
      await page.fill('#search', 'i17');
      await page.waitForSelector('#search-results li[data-id="i17"]');
      const ids = await page.$$eval('#search-results li.item', (rows) =>
        rows.map((r) => r.getAttribute('data-id')),
      );
      assert.equal(ids[0], 'i17', 'the exact id first');
      assert.ok(
        ids.every((id) => id!.includes('i17')),
        ids.join(','),
      );
    });

    test('a history built by clicking and pasting gets the API recommendations, side by side', async () => {
      await page.fill('#search', 'i17');
      await page.waitForSelector('#search-results li[data-id="i17"]');
      await refreshed(page, () => page.click('#search-results li[data-id="i17"]'));
      await page.fill('#paste', 'i23, i42\ni8');
      await refreshed(page, () => page.click('#paste-add'));
      const history = await page.$$eval('#history li.item', (rows) =>
        rows.map((r) => r.getAttribute('data-id')),
      );
      assert.deepEqual(history, ['i17', 'i23', 'i42', 'i8']);

      const sections = await page.$$eval('section.model h2', (hs) => hs.map((h) => h.textContent));
      assert.equal(sections.length, 2, 'two models side by side');
      assert.match(sections[0]!, /^delta /);
      assert.match(sections[1]!, /^fused .*lexical weight 2/);
      // Each list equals its model's API answer: the first model at the root route, the second through its prefix.
      const apiDelta = await post<{ items: { id: string; score: number }[] }>(`${base}/recommend`, {
        items: history,
        k: 10,
      });
      const apiFused = await post<{ items: { id: string; score: number }[] }>(
        `${base}/ui/api/models/1/recommend`,
        {
          items: history,
          k: 10,
        },
      );
      const delta = await shownList(page, 0);
      const fused = await shownList(page, 1);
      assert.deepEqual(
        delta.map((r) => [r.id, r.score]),
        apiDelta.items.map((r) => [r.id, r.score]),
      );
      assert.deepEqual(
        fused.map((r) => [r.id, r.score]),
        apiFused.items.map((r) => [r.id, r.score]),
      );
      assert.notDeepEqual(
        delta.map((r) => r.id),
        fused.map((r) => r.id),
        'the fused model ranks differently',
      );
      for (const row of delta) {
        const i = catalog.ids.indexOf(row.id);
        assert.equal(row.title, catalog.fields.title[i]);
        assert.equal(row.image, picture(i));
        assert.equal(row.terms, null, 'an unfused model shows no lexical term');
      }
      // The fused model's lexical term: weight x cosine of the history's TF-IDF profile, from the saved rows.
      const { rows, weight } = await loadLexicalFusion(join(models.fused, 'lexical'));
      const manifest = JSON.parse(readFileSync(join(models.fused, 'manifest.json'), 'utf8'));
      const itemIds: string[] = manifest.items.ids;
      const similarity = new Float32Array(itemIds.length);
      new ContentKNN({ sparse: rows }, { maxLength: 16 }).score(
        [Int32Array.from(history, (id) => itemIds.indexOf(id!))],
        similarity,
      );
      for (const row of fused) {
        const match = /^model (-?[\d.]+) \+ lexical (-?[\d.]+)$/.exec(row.terms ?? '');
        assert.ok(match, `terms of ${row.id}: ${row.terms}`);
        const lexical = weight * similarity[itemIds.indexOf(row.id)];
        assert.ok(Math.abs(Number(match[2]) - lexical) < 6e-4, `${row.id}: ${match[2]} vs ${lexical}`);
        assert.ok(Math.abs(Number(match[1]) + Number(match[2]) - row.score) < 2e-3);
      }
    });

    test('a token given on the page is kept in sessionStorage and sent as a bearer token', async () => {
      const token = 'explorer-test-token-0123456789';
      const seen: { url: string; authorization: string | undefined }[] = [];
      const listener = (request: { url(): string; headers(): Record<string, string> }) =>
        seen.push({ url: request.url(), authorization: request.headers()['authorization'] });
      page.on('request', listener);
      try {
        await page.fill('#token', token);
        await refreshed(page, () => page.click('#token-save'));
        assert.equal(await page.evaluate(() => sessionStorage.getItem('deltarec.token')), token);
        const api = seen.filter((r) => r.url.includes('/ui/api/'));
        assert.ok(
          api.some((r) => r.url.includes('/recommend')),
          'the refresh asked for recommendations',
        );
        for (const r of api) assert.equal(r.authorization, `Bearer ${token}`, r.url);
        seen.length = 0;
        await page.fill('#token', '');
        await refreshed(page, () => page.click('#token-save'));
        assert.equal(await page.evaluate(() => sessionStorage.getItem('deltarec.token')), null);
        assert.ok(seen.length > 0 && seen.every((r) => r.authorization === undefined));
      } finally {
        page.off('request', listener);
      }
    });

    test('an item added through the form is recommended at once, marked new, in every model', async () => {
      const history = await page.$$eval('#history li.item', (rows) =>
        rows.map((r) => r.getAttribute('data-id')),
      );
      const last = catalog.ids.indexOf(history[history.length - 1]!);
      // The new item's text is the last history item's: its content and lexical row are that item's.
      await page.fill('#add-form input[name="id"]', 'new-item-1');
      await page.fill('#add-form input[name="field-title"]', catalog.fields.title[last]);
      await page.fill('#add-form input[name="field-description"]', catalog.fields.description[last]);
      assert.equal(
        await page.$('#add-form input[name="field-image"]'),
        null,
        'only fields the encoders read',
      );
      await refreshed(page, () => page.click('#add-form button[type="submit"]'));
      await page.waitForSelector('#status:has-text("new-item-1")');
      assert.match((await page.textContent('#status')) ?? '', /delta: created; fused: created/);
      // The fused model ranks it among the top 10 (its lexical row is the last history item's); both lists are still
      // their APIs' answers, now over the grown catalog.
      const fused = await shownList(page, 1);
      const added = fused.find((r) => r.id === 'new-item-1');
      assert.ok(added, `the fused model recommends the new item: ${fused.map((r) => r.id).join(',')}`);
      assert.equal(added.badge, 'new');
      assert.equal(added.title, catalog.fields.title[last]);
      for (const [model, route] of [
        [0, '/recommend'],
        [1, '/ui/api/models/1/recommend'],
      ] as const) {
        const api = await post<{ items: { id: string; score: number }[] }>(`${base}${route}`, {
          items: history,
          k: 10,
        });
        const shown = await shownList(page, model);
        assert.deepEqual(
          shown.map((r) => [r.id, r.score]),
          api.items.map((r) => [r.id, r.score]),
        );
      }
      for (const prefix of ['', '/ui/api/models/1']) {
        const item = await (await fetch(`${base}${prefix}/items/new-item-1`)).json();
        assert.equal(item.added, true, `${prefix}/items/new-item-1`);
      }
      mkdirSync(SCREENSHOTS, { recursive: true });
      const file = join(SCREENSHOTS, 'explorer.png');
      await page.setViewportSize({ width: 1400, height: 1000 });
      await page.screenshot({ path: file, fullPage: true });
      const png = readFileSync(file);
      assert.equal(png.subarray(1, 4).toString(), 'PNG');
      assert.ok(statSync(file).size > 20_000, `screenshot ${file} has ${statSync(file).size} bytes`);
      console.log(`# explorer screenshot: ${file}`);
    });
  });
});
