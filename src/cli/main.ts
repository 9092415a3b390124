/**
 * `deltarec <command> [options]`. Each command lives in `commands/<name>.ts` and exports
 * `run(args: string[]): Promise<number>` and `summary: string`.
 */
const COMMANDS = [
  'demo',
  'prepare',
  'generate',
  'embed',
  'train',
  'evaluate',
  'experiment',
  'report',
  'recommend',
  'serve',
  'export',
] as const;

interface CommandModule {
  run(args: string[]): Promise<number>;
  summary: string;
}

async function load(name: string): Promise<CommandModule> {
  return (await import(`./commands/${name}.js`)) as CommandModule;
}

async function usage(): Promise<string> {
  const lines = ['usage: deltarec <command> [options]', '', 'commands:'];
  for (const name of COMMANDS) {
    try {
      lines.push(`  ${name.padEnd(12)} ${(await load(name)).summary}`);
    } catch {
      // a command that is not built yet is simply not listed
    }
  }
  lines.push('', 'Run `deltarec <command> --help` for its options.');
  return lines.join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    console.log(await usage());
    return name ? 0 : 1;
  }
  if (!(COMMANDS as readonly string[]).includes(name)) {
    console.error(`deltarec: unknown command '${name}'\n\n${await usage()}`);
    return 2;
  }
  return (await load(name)).run(rest);
}
