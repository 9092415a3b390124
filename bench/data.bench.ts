/**
 * Data pipeline throughput: ~10 million synthetic interactions written as CSV (not timed), then read + prepareSplit
 * end to end in a fresh child process, so that its peak RSS is the pipeline's own. Goal: >= 1M rows/s, < 2 GB.
 * DELTAREC_BENCH_DATA_ROWS sets another size.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Benchmark } from './index.js';
import { readInteractions } from '../src/data/readers.js';
import { prepareSplit } from '../src/data/split.js';
import { generateSynthetic } from '../src/data/synthetic.js';
import { writeInteractionsCsv } from '../src/data/writers.js';

const CHILD_ENV = 'DELTAREC_DATA_BENCH_CHILD';

interface ChildResult {
  rows: number;
  read_s: number;
  split_s: number;
  cpu_s: number; // user + system CPU time of read + split (all threads, GC included)
  max_rss_kb: number;
  test_users: number;
}

// Child process: the timed part only.
if (process.env[CHILD_ENV]) {
  const path = process.env[CHILD_ENV]!;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const data = await readInteractions(path);
  const t1 = performance.now();
  const split = prepareSplit(data);
  const t2 = performance.now();
  const cpu = process.cpuUsage(cpu0);
  const result: ChildResult = {
    rows: data.users.length,
    read_s: (t1 - t0) / 1000,
    split_s: (t2 - t1) / 1000,
    cpu_s: (cpu.user + cpu.system) / 1e6,
    max_rss_kb: process.resourceUsage().maxRSS,
    test_users: split.stats.test_users,
  };
  process.stdout.write(JSON.stringify(result) + '\n');
}

function runChild(csv: string): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url)], {
      env: { ...process.env, [CHILD_ENV]: csv },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) reject(new Error(`data bench child exited with ${code}`));
      else resolve(JSON.parse(out.trim().split('\n').pop()!) as ChildResult);
    });
  });
}

export const benchmark: Benchmark = {
  name: 'data',
  async run() {
    const targetRows = Number(process.env.DELTAREC_BENCH_DATA_ROWS ?? 10_000_000);
    const dir = await mkdtemp(join(tmpdir(), 'deltarec-data-bench-'));
    try {
      const csv = join(dir, 'interactions.csv');
      const t = performance.now();
      const meanLength = 10;
      const users = Math.ceil(targetRows / 9.5); // realized mean length is ~9.5 for meanLength 10
      const { interactions } = generateSynthetic({
        users,
        items: Math.max(1000, Math.round(users / 10)),
        topics: 200,
        meanLength,
        seed: 1,
      });
      await writeInteractionsCsv(csv, interactions);
      console.log(
        `generated ${interactions.users.length.toLocaleString('en-US')} interactions (${users.toLocaleString('en-US')} users) as CSV in ${((performance.now() - t) / 1000).toFixed(1)} s (not timed)`,
      );
      const load = loadavg()[0];
      const r = await runChild(csv);
      const total = r.read_s + r.split_s;
      const rowsPerSecond = r.rows / total;
      const peakMb = r.max_rss_kb / 1024;
      console.log(
        `read ${r.read_s.toFixed(2)} s + prepareSplit ${r.split_s.toFixed(2)} s = ${total.toFixed(2)} s for ${r.rows.toLocaleString('en-US')} rows`,
      );
      console.log(
        `throughput ${(rowsPerSecond / 1e6).toFixed(2)} M rows/s (goal >= 1), peak RSS ${peakMb.toFixed(0)} MB (goal < 2048), ${r.test_users.toLocaleString('en-US')} test users`,
      );
      console.log(
        `CPU time ${r.cpu_s.toFixed(2)} s (${(r.rows / r.cpu_s / 1e6).toFixed(2)} M rows per CPU second); load average ${load.toFixed(1)} on ${availableParallelism()} cores (wall time is inflated when the machine is shared)`,
      );
      return {
        data_rows: r.rows,
        data_read_s: r.read_s,
        data_split_s: r.split_s,
        data_rows_per_s: Math.round(rowsPerSecond),
        data_rows_per_cpu_s: Math.round(r.rows / r.cpu_s),
        data_load_average: Number(load.toFixed(2)),
        data_peak_rss_mb: Math.round(peakMb),
      };
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  },
};
