/**
 * Open-loop load generator for bench/serve.ts, run as its own process (so it can be pinned off the server's cores):
 * POST /recommend at a fixed mean rate with exponential gaps (Poisson arrivals), whatever the server does, each
 * request on a free keep-alive connection (opened on demand, at most --sockets; beyond, requests wait for one, their
 * latency still counted from the intended send time). A request's latency is measured from its intended
 * send time, not from when it went out, so a server (or generator) that falls behind shows as latency instead of
 * fewer requests (no coordinated omission).
 *
 *   node --import tsx bench/poisson-load.ts --url URL --bodies FILE --rate R --seconds S [--warmup S] [--seed N]
 *                                           [--sockets N]
 *
 * FILE is a JSON array of request bodies (used round-robin). After the warm-up it prints `measuring`, then at the
 * end one JSON line: latency percentiles (ms),
 * requests sent, answered and failed, the achieved rate, the generator's own lateness (p99 of actual minus
 * intended send time) and its CPU per request.
 */
import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { parseArgs } from 'node:util';
import { Random } from '../src/util/random.js';

const { values } = parseArgs({
  options: {
    url: { type: 'string' },
    bodies: { type: 'string' },
    rate: { type: 'string' },
    seconds: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '2' },
    seed: { type: 'string', default: '1' },
    timeout: { type: 'string', default: '10000' },
    sockets: { type: 'string', default: '256' },
  },
});
if (!values.url || !values.bodies || !values.rate) {
  throw new Error('poisson-load: --url, --bodies and --rate are required');
}
const url = new URL('/recommend', values.url);
const bodies = (JSON.parse(readFileSync(values.bodies, 'utf8')) as string[]).map((b) => Buffer.from(b));
const rate = Number(values.rate);
const timeoutMs = Number(values.timeout);
const agent = new Agent({ keepAlive: true, maxSockets: Number(values.sockets) });
const random = new Random(Number(values.seed));

interface Phase {
  latencies: number[];
  lateness: number[];
  sent: number;
  failed: number;
}

function send(body: Buffer, intended: number, phase: Phase, onDone: () => void): void {
  phase.lateness.push(performance.now() - intended);
  phase.sent++;
  const req = request(
    url,
    {
      method: 'POST',
      agent,
      headers: { 'content-type': 'application/json', 'content-length': body.length },
      timeout: timeoutMs,
    },
    (res) => {
      res.on('data', () => {});
      res.on('end', () => {
        if (res.statusCode === 200) phase.latencies.push(performance.now() - intended);
        else phase.failed++;
        onDone();
      });
    },
  );
  req.on('timeout', () => req.destroy(new Error('timeout')));
  req.on('error', () => {
    phase.failed++;
    onDone();
  });
  req.end(body);
}

/**
 * Sends at Poisson arrival times for `seconds`, then waits for the answers. Timers wake the loop up to 1 ms before
 * the next arrival; the last stretch is polled with setImmediate, so sends go out on time (lateness is reported).
 */
function run(seconds: number): Promise<Phase> {
  const phase: Phase = { latencies: [], lateness: [], sent: 0, failed: 0 };
  const start = performance.now();
  const end = start + seconds * 1000;
  let next = start;
  let pending = 0;
  let nextBody = 0;
  return new Promise((resolve) => {
    let sending = true;
    const done = () => {
      pending--;
      if (!sending && pending === 0) resolve(phase);
    };
    const tick = () => {
      const now = performance.now();
      while (next <= now && next < end) {
        pending++;
        send(bodies[nextBody++ % bodies.length], next, phase, done);
        next += -Math.log(1 - random.nextFloat()) * (1000 / rate);
      }
      if (next >= end) {
        sending = false;
        if (pending === 0) resolve(phase);
        return;
      }
      const wait = next - performance.now();
      if (wait > 1.5) setTimeout(tick, wait - 1);
      else setImmediate(tick);
    };
    tick();
  });
}

function percentile(sorted: Float64Array, q: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

const seconds = Number(values.seconds);
await run(Number(values.warmup));
process.stdout.write('measuring\n'); // the caller samples the server's CPU time from here to the result line
const cpuBefore = process.cpuUsage();
const phase = await run(seconds);
const cpu = process.cpuUsage(cpuBefore);
const sorted = Float64Array.from(phase.latencies).sort();
const lateness = Float64Array.from(phase.lateness).sort();
const round = (x: number) => Number(x.toFixed(3));
process.stdout.write(
  JSON.stringify({
    rate,
    seconds,
    sent: phase.sent,
    answered: sorted.length,
    failed: phase.failed,
    achieved_rps: round(sorted.length / seconds),
    p50_ms: round(percentile(sorted, 0.5)),
    p90_ms: round(percentile(sorted, 0.9)),
    p99_ms: round(percentile(sorted, 0.99)),
    p999_ms: round(percentile(sorted, 0.999)),
    max_ms: round(sorted[sorted.length - 1] ?? NaN),
    send_lateness_p99_ms: round(percentile(lateness, 0.99)),
    client_cpu_ms_per_request: round((cpu.user + cpu.system) / 1000 / Math.max(1, phase.sent)),
  }) + '\n',
);
agent.destroy();
