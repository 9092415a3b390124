import { readdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { readStoredConfig, runExperiment } from '../../experiment/experiment.js';

export const summary = 'rebuild an experiment folder’s report.html (and results, plots) from its stored runs';

const HELP = `usage: deltarec report RUN_DIR

Rewrites RUN_DIR/report.html, results.json, results.md, analyses.json and the SVG plots from the runs stored in
RUN_DIR/runs by \`deltarec experiment\` (with the config it saved in RUN_DIR/config.json); trains nothing.
report.html is one self-contained page: results table (mean ± std, best marked), every plot inline, run times,
split statistics, machine, notes and config; it opens offline in any browser.
`;

export async function run(args: string[]): Promise<number> {
  let positionals: string[];
  let values;
  try {
    ({ values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      options: { help: { type: 'boolean', short: 'h' } },
    }));
  } catch (error) {
    console.error(`deltarec report: ${(error as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  if (positionals.length !== 1) {
    console.error(`deltarec report: give exactly one RUN_DIR (got ${positionals.length})\n\n${HELP}`);
    return 2;
  }
  const dir = resolve(positionals[0]);
  try {
    const config = await readStoredConfig(dir);
    const stored = await readdir(join(dir, 'runs')).catch(() => [] as string[]);
    if (!stored.some((f) => f.endsWith('.json')))
      throw new Error(`${join(dir, 'runs')} holds no finished run`);
    const outcome = await runExperiment(config, dir, { baseDir: dir, reportOnly: true, log: () => {} });
    console.log(`${join(dir, 'report.html')} (${outcome.runs.length} runs)`);
    return 0;
  } catch (error) {
    console.error(`deltarec report: ${(error as Error).message}`);
    return 1;
  }
}
