/**
 * The panel layout of an item matrix for `scoreTopK` (types.ts): items in panels of PANEL_WIDTH, each panel its
 * items' d components as d rows of PANEL_WIDTH floats (a d x 64 block, 32 KB at d = 128), the last panel zero
 * padded. A panel is contiguous, so the kernel streams the matrix once per batch in order, and a panel's products
 * for a tile of users come from registers against one cache-resident block.
 */
export const PANEL_WIDTH = 64;

/** Floats of the panel layout of n items of width d. */
export function panelLength(n: number, d: number): number {
  return Math.ceil(n / PANEL_WIDTH) * PANEL_WIDTH * d;
}

/**
 * Writes rows from .. n - 1 of the row-major matrix (n x d) into `out` (panelLength(n, d) floats, or more);
 * rows before `from` are left as they are (a grown table repacks only its new rows).
 */
export function packPanels(matrix: Float32Array, n: number, d: number, out: Float32Array, from = 0): void {
  if (matrix.length < n * d)
    throw new Error(`packPanels: matrix has ${matrix.length} values, needs ${n} x ${d}`);
  if (out.length < panelLength(n, d)) throw new Error(`packPanels: out is shorter than ${panelLength(n, d)}`);
  for (let j = from; j < n; j++) packRow(matrix, j, d, out);
}

/** Rewrites the given rows of the row-major matrix in the panel layout `out` (e.g. rows updated in place). */
export function packPanelRows(
  matrix: Float32Array,
  rows: ArrayLike<number>,
  d: number,
  out: Float32Array,
): void {
  for (let i = 0; i < rows.length; i++) packRow(matrix, rows[i], d, out);
}

function packRow(matrix: Float32Array, j: number, d: number, out: Float32Array): void {
  const base = Math.floor(j / PANEL_WIDTH) * d * PANEL_WIDTH + (j % PANEL_WIDTH);
  const row = j * d;
  for (let p = 0; p < d; p++) out[base + p * PANEL_WIDTH] = matrix[row + p];
}
