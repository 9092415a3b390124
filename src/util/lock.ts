/**
 * Exclusive lock files holding `<pid> <hostname>`: one process per catalog log (deltarec serve), one process per
 * experiment run (deltarec experiment).
 *
 * A lock is written to a private file and hard-linked into place, so it never exists without its content. A lock
 * whose process is gone (SIGKILL, crash) is stale and taken over; only one process at a time may take over (it
 * holds `<lock>.takeover`, itself such a lock) and it re-reads the lock under that guard, so two processes racing
 * for one stale lock never both win. A lock written on another host cannot be checked and counts as held.
 */
import { link, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { resolve } from 'node:path';

export interface Lock {
  readonly path: string;
  /** Removes the lock file (only while it is still this lock). */
  release(): Promise<void>;
}

/** Who holds a lock: `process 4242` or `process 4242 on otherhost`. */
export class LockHeld extends Error {}

const TRIES = 50;
const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));

/** Lock files this process holds (never taken over by this process, though the pid is its own). */
const held = new Set<string>();

/** Takes the lock, or returns who holds it (a live process, this one included, or one on another host). */
export async function tryLock(path: string): Promise<Lock | { heldBy: string }> {
  const content = `${process.pid} ${hostname()}\n`;
  for (let attempt = 0; attempt < TRIES; attempt++) {
    if (await createExclusive(path, content)) return heldLock(path, content);
    const holder = await readHolder(path);
    if (holder === null) continue; // released between our attempt and the read
    if (isAlive(holder)) {
      return { heldBy: `process ${holder.pid}${holder.host === hostname() ? '' : ` on ${holder.host}`}` };
    }
    // Stale: take it over under the takeover guard.
    const guard = `${path}.takeover`;
    if (!(await createExclusive(guard, content))) {
      await sleep(20); // another process is taking over
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
    `could not take the lock file ${path}: a takeover seems stuck (remove ${path}.takeover if no deltarec ` +
      `process is starting)`,
  );
}

/** Takes the lock for `what` (named in the error, with `advice`), or throws LockHeld saying who holds it. */
export async function acquireLock(
  path: string,
  what: string,
  advice = 'stop that process first',
): Promise<Lock> {
  const lock = await tryLock(path);
  if ('heldBy' in lock)
    throw new LockHeld(`${what} is in use by ${lock.heldBy} (lock file ${path}); ${advice}`);
  return lock;
}

function heldLock(path: string, content: string): Lock {
  const key = resolve(path);
  held.add(key);
  return {
    path,
    async release() {
      held.delete(key);
      if ((await readHolder(path))?.raw === content) await rm(path, { force: true });
    },
  };
}

/** Creates `path` with `content` unless it exists (write a private file, hard-link it into place). */
async function createExclusive(path: string, content: string): Promise<boolean> {
  const mine = `${path}.${process.pid}.tmp`;
  await writeFile(mine, content);
  try {
    await link(mine, path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  } finally {
    await rm(mine, { force: true });
  }
}

interface Holder {
  path: string;
  pid: number;
  host: string;
  raw: string;
}

async function readHolder(path: string): Promise<Holder | null> {
  let raw: string;
  try {
    raw = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
  const [pid, host] = raw.trim().split(' ');
  const number = Number(pid);
  // A garbled lock (not written by this code) names no process: pid 0 counts as gone.
  return { path, pid: Number.isInteger(number) && number > 0 ? number : 0, host: host || hostname(), raw };
}

function isAlive(holder: Holder): boolean {
  if (holder.host !== hostname()) return true; // another host's processes cannot be checked
  if (holder.pid === 0) return false;
  // Our own pid: held by this process, or left by an earlier run whose pid was reused (another container): stale.
  if (holder.pid === process.pid) return held.has(resolve(holder.path));
  try {
    process.kill(holder.pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'; // exists, owned by another user
  }
}
