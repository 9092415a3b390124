/**
 * A small SVG chart writer (no dependency): line charts over categorical x positions and grouped bar charts.
 * Enough for the experiment analyses; the output opens in any browser.
 */

export interface Series {
  name: string;
  values: number[]; // one per x label; NaN leaves a gap
}

export interface ChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  labels: string[]; // x positions, left to right
  series: Series[];
  width?: number;
  height?: number;
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f'];
const MARGIN = { left: 64, right: 16, top: 36, bottom: 64 };

function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** A "nice" upper bound and tick step for the y axis (1, 2 or 5 times a power of ten). */
function niceScale(max: number): { top: number; step: number } {
  if (!(max > 0)) return { top: 1, step: 0.2 };
  const rough = max / 5;
  const power = Math.pow(10, Math.floor(Math.log10(rough)));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= rough) ?? 10 * power;
  return { top: Math.ceil(max / step - 1e-9) * step, step };
}

function frame(
  o: ChartOptions,
  kind: 'line' | 'bar',
): { body: string[]; x: (i: number) => number; y: (v: number) => number; band: number } {
  const width = o.width ?? 640;
  const height = o.height ?? 400;
  const plotW = width - MARGIN.left - MARGIN.right;
  const plotH = height - MARGIN.top - MARGIN.bottom;
  const finite = o.series.flatMap((s) => s.values).filter((v) => Number.isFinite(v));
  const { top, step } = niceScale(Math.max(0, ...finite));
  const n = Math.max(o.labels.length, 1);
  const band = plotW / n;
  const x = (i: number): number => MARGIN.left + band * (i + 0.5);
  const y = (v: number): number => MARGIN.top + plotH * (1 - v / top);
  const body: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="${width / 2}" y="20" text-anchor="middle" font-size="14">${escapeXml(o.title)}</text>`,
  ];
  const digits = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
  for (let v = 0; v <= top + step / 2; v += step) {
    body.push(
      `<line x1="${MARGIN.left}" x2="${width - MARGIN.right}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}" stroke="#ddd"/>`,
      `<text x="${MARGIN.left - 6}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end">${v.toFixed(digits)}</text>`,
    );
  }
  o.labels.forEach((label, i) => {
    body.push(
      `<text x="${x(i).toFixed(1)}" y="${height - MARGIN.bottom + 16}" text-anchor="middle">${escapeXml(label)}</text>`,
    );
  });
  body.push(
    `<line x1="${MARGIN.left}" x2="${MARGIN.left}" y1="${MARGIN.top}" y2="${height - MARGIN.bottom}" stroke="#333"/>`,
    `<line x1="${MARGIN.left}" x2="${width - MARGIN.right}" y1="${height - MARGIN.bottom}" y2="${height - MARGIN.bottom}" stroke="#333"/>`,
    `<text x="${MARGIN.left + plotW / 2}" y="${height - MARGIN.bottom + 36}" text-anchor="middle">${escapeXml(o.xLabel)}</text>`,
    `<text transform="translate(16 ${MARGIN.top + plotH / 2}) rotate(-90)" text-anchor="middle">${escapeXml(o.yLabel)}</text>`,
  );
  // legend along the bottom
  o.series.forEach((s, i) => {
    const lx = MARGIN.left + i * 150;
    const ly = height - 10;
    const color = COLORS[i % COLORS.length];
    body.push(
      kind === 'line'
        ? `<line x1="${lx}" x2="${lx + 18}" y1="${ly - 4}" y2="${ly - 4}" stroke="${color}" stroke-width="2"/>`
        : `<rect x="${lx}" y="${ly - 10}" width="18" height="10" fill="${color}"/>`,
      `<text x="${lx + 24}" y="${ly}">${escapeXml(s.name)}</text>`,
    );
  });
  return { body, x, y, band };
}

/** One polyline per series with a marker at each point. */
export function lineChart(o: ChartOptions): string {
  const { body, x, y } = frame(o, 'line');
  o.series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    let path = '';
    let pen = false;
    s.values.forEach((v, j) => {
      if (!Number.isFinite(v)) {
        pen = false;
        return;
      }
      path += `${pen ? 'L' : 'M'}${x(j).toFixed(1)} ${y(v).toFixed(1)} `;
      pen = true;
      body.push(
        `<circle cx="${x(j).toFixed(1)}" cy="${y(v).toFixed(1)}" r="3" fill="${color}"><title>${escapeXml(`${s.name} ${o.labels[j]}: ${v.toFixed(4)}`)}</title></circle>`,
      );
    });
    if (path) body.push(`<path d="${path.trim()}" fill="none" stroke="${color}" stroke-width="2"/>`);
  });
  body.push('</svg>');
  return body.join('\n') + '\n';
}

/** Grouped bars: one group per x label, one bar per series. */
export function barChart(o: ChartOptions): string {
  const { body, x, y, band } = frame(o, 'bar');
  const groups = Math.max(o.series.length, 1);
  const barW = (band * 0.8) / groups;
  o.series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    s.values.forEach((v, j) => {
      if (!Number.isFinite(v)) return;
      const left = x(j) - band * 0.4 + i * barW;
      const topY = y(v);
      const h = y(0) - topY;
      body.push(
        `<rect x="${left.toFixed(1)}" y="${topY.toFixed(1)}" width="${(barW * 0.9).toFixed(1)}" height="${h.toFixed(1)}" fill="${color}"><title>${escapeXml(`${s.name} ${o.labels[j]}: ${v.toFixed(4)}`)}</title></rect>`,
      );
    });
  });
  body.push('</svg>');
  return body.join('\n') + '\n';
}
