/**
 * An exclusive lock file holding `<pid> <hostname>`, so that two processes never append to one catalog log.
 *
 * Created with O_EXCL. A lock whose process is gone (a SIGKILLed or crashed server) is stale and taken over; only
 * one starter at a time may take over (it holds `<lock>.takeover`, itself created with O_EXCL), and it re-reads the
 * lock under that guard, so two starters racing for one stale lock never both win. A lock written on another host
 * cannot be checked and is refused.
 */
import { open, readFile, rm, stat } from 'node:fs/promises';
import { hostname } from 'node:os';
import { resolve } from 'node:path';

export interface Lock {
  readonly path: string;
  release(): Promise<void>;
}

const TAKEOVER_TRIES = 50;

const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));

/** Takes the lock at `path` for `what` (named in the errors), or throws saying who holds it. */
export async function acquireLock(path: string, what: string): Promise<Lock> {
  const content = `${process.pid} ${hostname()}\n`;
  for (let attempt = 0; attempt < TAKEOVER_TRIES; attempt++) {
    if (await createExclusive(path, content)) return heldLock(path, content);
    const holder = await readHolder(path);
    if (holder === null) continue; // released between our attempt and the read: try again
    if (holder.raw === '' && Date.now() - holder.modified < 2000) {
      await sleep(20); // its writer is between create and write
      continue;
    }
    if (isAlive(holder)) {
      throw new Error(
        `${what} is in use by process ${holder.pid}${holder.host === hostname() ? '' : ` on ${holder.host}`} ` +
          `(lock file ${path}); stop that server first, or give this one another --catalog`,
      );
    }
    // Stale: its process is gone. Take it over under the takeover guard.
    const guard = `${path}.takeover`;
    if (!(await createExclusive(guard, content))) {
      await sleep(20); // another starter is taking over
      continue;
    }
    try {
      const again = await readHolder(path);
      if (again && again.raw === holder.raw) await rm(path, { force: true });
      if (await createExclusive(path, content)) return heldLock(path, content);
    } finally {
      await rm(guard, { force: true });
    }
  }
  throw new Error(
    `${what}: could not take the lock file ${path} (a stale ${path}.takeover from a crashed start? remove it)`,
  );
}

/** Lock files this process holds (a second service in the same process must not take them over). */
const held = new Set<string>();

function heldLock(path: string, content: string): Lock {
  const key = resolve(path);
  held.add(key);
  return {
    path,
    async release() {
      held.delete(key);
      // Remove it only while it is still ours.
      if ((await readHolder(path))?.raw === content) await rm(path, { force: true });
    },
  };
}

async function createExclusive(path: string, content: string): Promise<boolean> {
  let handle;
  try {
    handle = await open(path, 'wx');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  }
  try {
    await handle.writeFile(content);
    await handle.sync();
  } finally {
    await handle.close();
  }
  return true;
}

interface Holder {
  path: string;
  pid: number;
  host: string;
  raw: string;
  modified: number;
}

async function readHolder(path: string): Promise<Holder | null> {
  let raw: string;
  let modified: number;
  try {
    raw = await readFile(path, 'utf8');
    modified = (await stat(path)).mtimeMs;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
  const [pid, host] = raw.trim().split(' ');
  // An old empty or garbled lock (its writer died between create and write) is stale: pid 0 is never alive.
  const number = Number(pid);
  return { path, pid: Number.isInteger(number) ? number : 0, host: host || hostname(), raw, modified };
}

function isAlive(holder: Holder): boolean {
  if (holder.host !== hostname()) return true; // cannot check another host's processes: assume alive
  if (holder.pid <= 0) return false;
  // Our own pid: held by this process, or left by an earlier run whose pid was reused (another container): stale.
  if (holder.pid === process.pid) return held.has(resolve(holder.path));
  try {
    process.kill(holder.pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'; // exists, owned by someone else
  }
}
