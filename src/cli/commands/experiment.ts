import { spawn } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { dirname, extname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { readExperimentConfig, runExperiment } from '../../experiment/experiment.js';
import { intOption, withNegativeNumbers } from '../options.js';

export const summary =
  'run models x seeds from a JSON config (resumable); writes results.json, results.md, plots';

const HELP = `usage: deltarec experiment --config FILE --out DIR

Runs every model of the config with every seed (default: knn, sasrec, content-init, content-delta x seeds 0-4).
Each finished run is stored as DIR/runs/<model>-seed<s>.json and skipped when the command is run again, so an
interrupted experiment resumes where it stopped (Ctrl-C stops after the current training step; the unfinished run
is not stored). At the end DIR/results.json (mean and std per model, segment and metric), DIR/results.md (the
paper's Table 2 layout), DIR/analyses.json and SVG plots are written. Config format: docs/experiments.md.

  --config FILE      experiment config (JSON; relative data paths are resolved against its folder)
  --out DIR          output folder (created)
  --jobs N           run N runs at a time, each in its own process with DELTAREC_THREADS = cores / N (default 1).
                     On 2 cores, --jobs 2 gets about 20% more runs per hour than one 2-thread process; a run's
                     numbers depend on its thread count (floating-point summation order), not on N otherwise
  --report-only      run nothing; rewrite results.json, results.md and the plots from the runs stored so far
                     (e.g. while other processes are still working on the same folder)
`;

export async function run(args: string[]): Promise<number> {
  let values;
  try {
    values = parseArgs({
      args: withNegativeNumbers(args),
      options: {
        config: { type: 'string' },
        out: { type: 'string' },
        'report-only': { type: 'boolean' },
        jobs: { type: 'string', default: '1' },
        help: { type: 'boolean', short: 'h' },
      },
    }).values;
  } catch (error) {
    console.error(`deltarec experiment: ${(error as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  if (!values.config || !values.out) {
    console.error(`deltarec experiment: --config FILE and --out DIR are required\n\n${HELP}`);
    return 2;
  }
  let jobs: number;
  try {
    jobs = intOption(values.jobs, 'jobs', 1)!;
  } catch (error) {
    console.error(`deltarec experiment: ${(error as Error).message}`);
    return 2;
  }
  const controller = new AbortController();
  let interrupts = 0;
  const onSigint = () => {
    interrupts++;
    if (interrupts > 1) process.exit(130);
    console.error('\nstopping after the current step (finished runs are kept); Ctrl-C again to exit now');
    controller.abort();
  };
  process.on('SIGINT', onSigint);
  try {
    if (jobs > 1 && !values['report-only']) {
      const code = await runJobs(jobs, values.config, values.out);
      if (code !== 0) return code;
      // Every job has stopped: write the final report from all stored runs.
      values['report-only'] = true;
    }
    const config = await readExperimentConfig(values.config);
    const outcome = await runExperiment(config, values.out, {
      baseDir: dirname(resolve(values.config)),
      signal: controller.signal,
      reportOnly: values['report-only'],
    });
    console.error(
      `${outcome.ranRuns} runs done now, ${outcome.skippedRuns} reused, in ${outcome.seconds.toFixed(0)} s; results in ${values.out}` +
        (outcome.completed ? '' : ' (incomplete: run the same command again to resume)'),
    );
    return outcome.completed ? 0 : 3;
  } catch (error) {
    console.error(`deltarec experiment: ${(error as Error).message}`);
    return 1;
  } finally {
    process.off('SIGINT', onSigint);
  }
}

/**
 * Runs `deltarec experiment` in `jobs` child processes on the same output folder; the per-run lock files make
 * each run go to exactly one of them. Their output lines are prefixed with the job number. Ctrl-C reaches the
 * children too (same process group), and each stops after its current step.
 */
async function runJobs(jobs: number, config: string, out: string): Promise<number> {
  const threads =
    process.env.DELTAREC_THREADS ?? String(Math.max(1, Math.floor(availableParallelism() / jobs)));
  // The entry script next to this module (cli.ts under tsx, cli.js when built), with this process's loader flags.
  const entry = fileURLToPath(new URL(`../cli${extname(import.meta.url)}`, import.meta.url));
  const loaderArgs = keepLoaderArgs(process.execArgv);
  console.error(`experiment: ${jobs} jobs, DELTAREC_THREADS=${threads} each`);
  const codes = await Promise.all(
    Array.from({ length: jobs }, (_, job) => {
      const child = spawn(
        process.execPath,
        [...loaderArgs, entry, 'experiment', '--config', config, '--out', out],
        { env: { ...process.env, DELTAREC_THREADS: threads }, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      const prefix = `[job ${job + 1}] `;
      for (const stream of [child.stdout!, child.stderr!]) {
        let pending = '';
        stream.setEncoding('utf8');
        stream.on('data', (chunk: string) => {
          const lines = (pending + chunk).split('\n');
          pending = lines.pop()!;
          for (const line of lines) process.stderr.write(prefix + line + '\n');
        });
        stream.on('end', () => pending && process.stderr.write(prefix + pending + '\n'));
      }
      return new Promise<number>((done) => child.on('close', (code) => done(code ?? 1)));
    }),
  );
  // 0 = all done; 3 = incomplete (another job held a run, or interrupted): the report says which.
  const failed = codes.find((c) => c !== 0 && c !== 3);
  return failed ?? 0;
}

/** The `--import X` / `--loader X` / `--require X` flags of this process (tsx when run from source). */
function keepLoaderArgs(execArgv: string[]): string[] {
  const kept: string[] = [];
  for (let i = 0; i < execArgv.length; i++) {
    const arg = execArgv[i];
    if (/^--(import|loader|experimental-loader|require)=/.test(arg)) kept.push(arg);
    else if (
      /^(--import|--loader|--experimental-loader|--require|-r)$/.test(arg) &&
      i + 1 < execArgv.length
    ) {
      kept.push(arg, execArgv[++i]);
    }
  }
  return kept;
}
