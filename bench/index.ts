/**
 * `npm run bench [-- --only NAME[,NAME]] [--json FILE]`: runs every benchmark module in this folder that exports
 * `benchmark: Benchmark`, prints its report and writes all numeric results to one JSON file.
 */
import { readdir, writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';

export interface Benchmark {
  name: string;
  /** Runs the benchmark, printing a human report; returns the numbers to record. */
  run(): Promise<Record<string, number | string>>;
}

const { values } = parseArgs({
  options: { only: { type: 'string' }, json: { type: 'string' } },
});
const only = values.only?.split(',');
const here = new URL('.', import.meta.url);
const files = (await readdir(here)).filter((f) => f.endsWith('.bench.ts')).sort();
const results: Record<string, number | string> = {};
for (const file of files) {
  const { benchmark } = (await import(new URL(file, here).href)) as { benchmark: Benchmark };
  if (only && !only.includes(benchmark.name)) continue;
  console.log(`\n=== ${benchmark.name} ===`);
  Object.assign(results, await benchmark.run());
}
if (values.json) {
  await writeFile(values.json, JSON.stringify(results, null, 2) + '\n');
  console.log(`\nwrote ${values.json}`);
}
