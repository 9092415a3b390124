/** The `deltarec` process entry: runs one command and exits with its status (bin/deltarec.js imports this). */
import { main } from './main.js';

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    console.error(`deltarec: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);
