/**
 * Request counters and latency histograms, process and event-loop figures, rendered in the Prometheus text
 * exposition format (version 0.0.4).
 */
import { monitorEventLoopDelay, performance, type IntervalHistogram } from 'node:perf_hooks';

/** Upper bounds of the latency buckets, in seconds. */
const BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];
/** Upper bounds of the stage buckets (a stage can take microseconds), in seconds. */
const STAGE_BUCKETS = [
  0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1,
];

/** The stages of a /recommend request, in order (RequestStages in engine.ts, then the response). */
export const RECOMMEND_STAGES = ['queue', 'transfer', 'encode', 'score', 'topk', 'serialize'] as const;
export type RecommendStage = (typeof RECOMMEND_STAGES)[number];

interface Histogram {
  counts: Float64Array; // per bucket (not cumulative), plus +Inf at the end
  sum: number;
  count: number;
}

function newHistogram(buckets: readonly number[]): Histogram {
  return { counts: new Float64Array(buckets.length + 1), sum: 0, count: 0 };
}

function observeInto(h: Histogram, buckets: readonly number[], value: number): void {
  let b = 0;
  while (b < buckets.length && value > buckets[b]) b++;
  h.counts[b]++;
  h.sum += value;
  h.count++;
}

/** The _bucket, _sum and _count lines of one labelled histogram. */
function histogramLines(name: string, labels: string, h: Histogram, buckets: readonly number[]): string[] {
  const lines: string[] = [];
  let cumulative = 0;
  for (let b = 0; b < buckets.length; b++) {
    cumulative += h.counts[b];
    lines.push(`${name}_bucket{${labels},le="${buckets[b]}"} ${cumulative}`);
  }
  lines.push(`${name}_bucket{${labels},le="+Inf"} ${h.count}`);
  lines.push(`${name}_sum{${labels}} ${h.sum}`);
  lines.push(`${name}_count{${labels}} ${h.count}`);
  return lines;
}

function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

export interface Gauge {
  name: string;
  help: string;
  type: 'gauge' | 'counter';
  values: [string, number][];
}

export class Metrics {
  private readonly requests = new Map<string, number>(); // label set -> count
  private readonly latency = new Map<string, Histogram>(); // label set -> histogram
  private readonly stages = new Map<RecommendStage, Histogram>(
    RECOMMEND_STAGES.map((stage) => [stage, newHistogram(STAGE_BUCKETS)]),
  );
  private readonly loopDelay: IntervalHistogram = monitorEventLoopDelay({ resolution: 10 });
  private loopUtilization = performance.eventLoopUtilization();

  constructor() {
    this.loopDelay.enable();
  }

  stop(): void {
    this.loopDelay.disable();
  }

  /**
   * Process and event-loop figures: CPU seconds, resident and heap memory, start time, event-loop delay
   * percentiles (since start) and the event loop's utilization since the previous scrape.
   */
  processGauges(): Gauge[] {
    const cpu = process.cpuUsage();
    const memory = process.memoryUsage();
    const utilization = performance.eventLoopUtilization(this.loopUtilization);
    this.loopUtilization = performance.eventLoopUtilization();
    const delay = this.loopDelay;
    const seconds = (ns: number) => (Number.isFinite(ns) ? ns / 1e9 : 0);
    return [
      {
        name: 'process_cpu_seconds_total',
        help: 'User and system CPU time of the process.',
        type: 'counter',
        values: [['', (cpu.user + cpu.system) / 1e6]],
      },
      {
        name: 'process_resident_memory_bytes',
        help: 'Resident memory of the process.',
        type: 'gauge',
        values: [['', memory.rss]],
      },
      {
        name: 'nodejs_heap_used_bytes',
        help: 'Used V8 heap.',
        type: 'gauge',
        values: [['', memory.heapUsed]],
      },
      {
        name: 'process_start_time_seconds',
        help: 'Start of the process, seconds since the Unix epoch.',
        type: 'gauge',
        values: [['', Math.round((Date.now() - process.uptime() * 1000) / 1000)]],
      },
      {
        name: 'nodejs_eventloop_delay_seconds',
        help: 'Event-loop delay percentiles since the start (10 ms sampling).',
        type: 'gauge',
        values: [
          ['quantile="0.5"', seconds(delay.percentile(50))],
          ['quantile="0.99"', seconds(delay.percentile(99))],
          ['quantile="1"', seconds(delay.max)],
        ],
      },
      {
        name: 'nodejs_eventloop_utilization',
        help: 'Fraction of time the event loop was busy since the previous scrape.',
        type: 'gauge',
        values: [['', utilization.utilization]],
      },
    ];
  }

  /** Records one finished request. */
  observe(method: string, route: string, status: number, seconds: number): void {
    const base = `method="${escapeLabel(method)}",route="${escapeLabel(route)}"`;
    const key = `${base},status="${status}"`;
    this.requests.set(key, (this.requests.get(key) ?? 0) + 1);
    let h = this.latency.get(base);
    if (!h) {
      h = newHistogram(BUCKETS);
      this.latency.set(base, h);
    }
    observeInto(h, BUCKETS, seconds);
  }

  /** Records the time one /recommend request spent in one stage. */
  observeStage(stage: RecommendStage, seconds: number): void {
    observeInto(this.stages.get(stage)!, STAGE_BUCKETS, seconds);
  }

  /** Prometheus text; `gauges` adds name -> value lines (each with HELP text). */
  render(gauges: Gauge[]): string {
    const lines: string[] = [
      '# HELP deltarec_http_requests_total HTTP requests by method, route and status.',
      '# TYPE deltarec_http_requests_total counter',
    ];
    for (const [labels, count] of this.requests)
      lines.push(`deltarec_http_requests_total{${labels}} ${count}`);
    lines.push(
      '# HELP deltarec_http_request_duration_seconds HTTP request latency by method and route.',
      '# TYPE deltarec_http_request_duration_seconds histogram',
    );
    for (const [labels, h] of this.latency)
      lines.push(...histogramLines('deltarec_http_request_duration_seconds', labels, h, BUCKETS));
    lines.push(
      '# HELP deltarec_recommend_stage_seconds Where the time of a POST /recommend goes: queue (waiting for a scoring backend), transfer (to the scoring worker and back), encode (its batch), score (its batch), topk (after scoring, until its own top-k), serialize (building and serializing the response).',
      '# TYPE deltarec_recommend_stage_seconds histogram',
    );
    for (const [stage, h] of this.stages)
      lines.push(...histogramLines('deltarec_recommend_stage_seconds', `stage="${stage}"`, h, STAGE_BUCKETS));
    for (const g of gauges) {
      lines.push(`# HELP ${g.name} ${g.help}`, `# TYPE ${g.name} ${g.type}`);
      for (const [labels, value] of g.values) lines.push(`${g.name}${labels ? `{${labels}}` : ''} ${value}`);
    }
    return lines.join('\n') + '\n';
  }
}
