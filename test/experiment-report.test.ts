/**
 * report.html of `deltarec experiment`: the results table with the best values marked, every plot inline, run
 * times, split statistics, machine and config; rebuilt identically by `deltarec report`; and, in headless Chromium
 * (skipped without Debian's `chromium`), the table and every plot render with no broken image.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { run as reportCommand } from '../src/cli/commands/report.js';
import { parseExperimentConfig, runExperiment } from '../src/experiment/experiment.js';
import { BROWSER_SKIP, launchBrowser, SCREENSHOTS } from './browser.js';

const config = parseExperimentConfig(
  {
    name: 'tiny report',
    data: { synthetic: { users: 250, items: 120, topics: 5, seed: 5 } },
    content: { fields: ['title', 'description'], dim: 24 },
    model: { d: 16, maxLength: 12, epochs: 2, patience: 2 },
    seeds: [0, 1],
    models: ['knn', 'content-init'],
    sweep: { base: 'content-delta', param: 'deltaMax', values: [0.1, 0.5], unbounded: 'content-init' },
  },
  'tiny.json',
);

describe('experiment report.html', () => {
  let dir = '';
  let html = '';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'deltarec-report-'));
    const outcome = await runExperiment(config, dir, { baseDir: dir, log: () => {} });
    assert.ok(outcome.completed);
    html = readFileSync(join(dir, 'report.html'), 'utf8');
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test('holds the results table with the best mean of each column marked', async () => {
    const results = JSON.parse(readFileSync(join(dir, 'results.json'), 'utf8'));
    const models = Object.keys(results);
    assert.deepEqual(models, [
      'knn',
      'content-init',
      'content-delta-deltaMax0.1',
      'content-delta-deltaMax0.5',
    ]);
    const table = /<table class="results">([\s\S]*?)<\/table>/.exec(html)![1];
    const rows = [...table.matchAll(/<tr>([\s\S]*?)<\/tr>/g)]
      .slice(1)
      .map((m) => [...m[1].matchAll(/<td>([\s\S]*?)<\/td>/g)].map((c) => c[1]));
    assert.equal(rows.length, models.length);
    const columns = ['cold', 'warm', 'all'].flatMap((s) => [`ndcg@10:${s}`]);
    columns.push(...['cold', 'warm', 'all'].map((s) => `hr@10:${s}`));
    columns.forEach((column, c) => {
      const [metric, segment] = column.split(':');
      const means = models.map((m) => results[m][segment][metric].mean as number);
      const best = Math.max(...means);
      rows.forEach((row, r) => {
        const cell = row[2 + c];
        const { mean, std } = results[models[r]][segment][metric];
        assert.ok(
          cell.includes(`${mean.toFixed(4)} ± ${std.toFixed(4)}`),
          `${column} of ${models[r]}: ${cell}`,
        );
        assert.equal(cell.includes('class="best"'), means[r] === best, `${column} of ${models[r]}: ${cell}`);
      });
    });
  });

  test('inlines every plot, shows run times, split statistics, machine and config, and loads nothing', () => {
    const svgFiles = readdirSync(dir, { recursive: true })
      .map(String)
      .filter((f) => f.endsWith('.svg'));
    assert.equal(svgFiles.length, 3, svgFiles.join(', '));
    for (const file of svgFiles) {
      const svg = readFileSync(join(dir, file), 'utf8');
      assert.ok(html.includes(`<figure data-plot="${file}">${svg}`), `${file} inline`);
    }
    assert.equal((html.match(/<svg /g) ?? []).length, svgFiles.length);
    const stats = JSON.parse(readFileSync(join(dir, 'split-stats.json'), 'utf8'));
    assert.ok(html.includes(`<td>test_users</td><td>${stats.test_users}</td>`));
    assert.match(html, /<td>cores<\/td><td>\d+<\/td>/);
    assert.match(html, /<h2>Run times<\/h2>/);
    assert.ok(html.includes('&quot;deltaMax&quot;'), 'the config');
    // Offline: no scripts, no images, no stylesheets or fonts from anywhere; the only URL is the SVG namespace.
    assert.doesNotMatch(html, /<script|<img|<link|@import|url\(/);
    const urls = html.match(/https?:\/\/[^\s"'<]+/g) ?? [];
    assert.deepEqual([...new Set(urls)], ['http://www.w3.org/2000/svg']);
  });

  test('deltarec report RUN_DIR rebuilds the same page', async () => {
    rmSync(join(dir, 'report.html'));
    const log = console.log;
    console.log = () => {};
    try {
      assert.equal(await reportCommand([dir]), 0);
    } finally {
      console.log = log;
    }
    assert.equal(readFileSync(join(dir, 'report.html'), 'utf8'), html);
    const error = console.error;
    const errors: string[] = [];
    console.error = (...a: unknown[]) => void errors.push(a.join(' '));
    try {
      assert.equal(await reportCommand([join(dir, 'runs')]), 1);
    } finally {
      console.error = error;
    }
    assert.match(errors.join('\n'), /config\.json.*is .* a `deltarec experiment` folder/);
  });

  test(
    'renders in headless Chromium: the table and every plot, no broken image',
    { skip: BROWSER_SKIP },
    async () => {
      const { context, profile } = await launchBrowser();
      try {
        const page = await context.newPage();
        await page.goto(pathToFileURL(join(dir, 'report.html')).href);
        const rendered = await page.evaluate(() => ({
          rows: document.querySelectorAll('table.results tbody tr').length,
          tableHeight: document.querySelector('table.results')!.getBoundingClientRect().height,
          plots: [...document.querySelectorAll('figure svg')].map((svg) => {
            const box = svg.getBoundingClientRect();
            return {
              width: box.width,
              height: box.height,
              marks: svg.querySelectorAll('rect, path, polyline, line').length,
            };
          }),
          brokenImages: [...document.images].filter((img) => !img.complete || img.naturalWidth === 0).length,
        }));
        assert.equal(rendered.rows, 4);
        assert.ok(rendered.tableHeight > 50, `table height ${rendered.tableHeight}`);
        assert.equal(rendered.plots.length, 3);
        for (const plot of rendered.plots) {
          assert.ok(plot.width > 300 && plot.height > 150, JSON.stringify(plot));
          assert.ok(plot.marks > 5, JSON.stringify(plot));
        }
        assert.equal(rendered.brokenImages, 0);
        mkdirSync(SCREENSHOTS, { recursive: true });
        await page.screenshot({ path: join(SCREENSHOTS, 'report.png'), fullPage: true });
        console.log(`# report screenshot: ${join(SCREENSHOTS, 'report.png')}`);
      } finally {
        await context.close();
        await rm(profile, { recursive: true, force: true });
      }
    },
  );
});
