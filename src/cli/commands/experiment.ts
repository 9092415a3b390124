import { dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { readExperimentConfig, runExperiment } from '../../eval/experiment.js';

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
  --report-only      run nothing; rewrite results.json, results.md and the plots from the runs stored so far
                     (e.g. while other processes are still working on the same folder)
`;

export async function run(args: string[]): Promise<number> {
  let values;
  try {
    values = parseArgs({
      args,
      options: {
        config: { type: 'string' },
        out: { type: 'string' },
        'report-only': { type: 'boolean' },
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
