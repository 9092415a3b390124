/**
 * Load time and peak memory of loading one saved model, as the service's scoring worker loads it
 * (`loadScoringModel`, src/serve/models.ts). Run it in a fresh process per measurement (peak RSS is per process):
 *
 *   node --import tsx bench/load-model.ts MODEL_DIR [--hash]
 *
 * Prints one JSON line: load_s (wall time of the load), cpu_s (the process's CPU time during the load, user + system,
 * all threads: less sensitive than wall time to other processes on a shared machine), rss_before_mb (the process before loading),
 * peak_rss_mb (process.resourceUsage().maxRSS after the load), model_mb (bytes of model.safetensors) and, with
 * --hash, the sha256 of every model tensor's bytes in parameters() order: equal hashes before and after a change
 * of the loader mean the same parameters bit for bit.
 */
import { createHash } from 'node:crypto';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { SASRec } from '../src/model/sasrec.js';
import { loadScoringModel } from '../src/serve/models.js';

const dir = process.argv[2];
if (!dir) {
  console.error('usage: node --import tsx bench/load-model.ts MODEL_DIR [--hash]');
  process.exit(2);
}
const mb = (bytes: number) => Math.round(bytes / 2 ** 20);
const rssBefore = process.memoryUsage().rss;
const started = process.hrtime.bigint();
const cpuBefore = process.cpuUsage();
const loaded = await loadScoringModel(dir);
const loadSeconds = Number(process.hrtime.bigint() - started) / 1e9;
const cpu = process.cpuUsage(cpuBefore);
const peakRss = process.resourceUsage().maxRSS * 1024; // maxRSS is in kilobytes
const result: Record<string, unknown> = {
  model: dir,
  strategy: loaded.strategy,
  items: loaded.model.numItems,
  load_s: Number(loadSeconds.toFixed(3)),
  cpu_s: Number(((cpu.user + cpu.system) / 1e6).toFixed(3)),
  rss_before_mb: mb(rssBefore),
  peak_rss_mb: mb(peakRss),
  model_mb: mb(statSync(join(dir, 'model.safetensors')).size),
};
if (process.argv.includes('--hash') && loaded.model instanceof SASRec) {
  const hash = createHash('sha256');
  for (const t of loaded.model.parameters()) {
    hash.update(t.name);
    hash.update(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  }
  result.parameters_sha256 = hash.digest('hex');
}
console.log(JSON.stringify(result));
