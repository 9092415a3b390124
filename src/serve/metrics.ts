/** Request counters and latency histograms, rendered in the Prometheus text exposition format (version 0.0.4). */

/** Upper bounds of the latency buckets, in seconds. */
const BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

interface Histogram {
  counts: Float64Array; // per bucket (not cumulative), plus +Inf at the end
  sum: number;
  count: number;
}

function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

export class Metrics {
  private readonly requests = new Map<string, number>(); // label set -> count
  private readonly latency = new Map<string, Histogram>(); // label set -> histogram

  /** Records one finished request. */
  observe(method: string, route: string, status: number, seconds: number): void {
    const base = `method="${escapeLabel(method)}",route="${escapeLabel(route)}"`;
    const key = `${base},status="${status}"`;
    this.requests.set(key, (this.requests.get(key) ?? 0) + 1);
    let h = this.latency.get(base);
    if (!h) {
      h = { counts: new Float64Array(BUCKETS.length + 1), sum: 0, count: 0 };
      this.latency.set(base, h);
    }
    let b = 0;
    while (b < BUCKETS.length && seconds > BUCKETS[b]) b++;
    h.counts[b]++;
    h.sum += seconds;
    h.count++;
  }

  /** Prometheus text; `gauges` adds name -> value lines (each with HELP text). */
  render(
    gauges: { name: string; help: string; type: 'gauge' | 'counter'; values: [string, number][] }[],
  ): string {
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
    for (const [labels, h] of this.latency) {
      let cumulative = 0;
      for (let b = 0; b < BUCKETS.length; b++) {
        cumulative += h.counts[b];
        lines.push(
          `deltarec_http_request_duration_seconds_bucket{${labels},le="${BUCKETS[b]}"} ${cumulative}`,
        );
      }
      lines.push(`deltarec_http_request_duration_seconds_bucket{${labels},le="+Inf"} ${h.count}`);
      lines.push(`deltarec_http_request_duration_seconds_sum{${labels}} ${h.sum}`);
      lines.push(`deltarec_http_request_duration_seconds_count{${labels}} ${h.count}`);
    }
    for (const g of gauges) {
      lines.push(`# HELP ${g.name} ${g.help}`, `# TYPE ${g.name} ${g.type}`);
      for (const [labels, value] of g.values) lines.push(`${g.name}${labels ? `{${labels}}` : ''} ${value}`);
    }
    return lines.join('\n') + '\n';
  }
}
