/**
 * ONNX export of a SASRec model (opset 17): the sequence encoder and the item matrix in one graph, plus a JSON
 * sidecar with the item ids and how to feed histories.
 *
 *   input   item_ids     int64 [batch, length]  item indices (sidecar item_ids), most recent last, 0 = padding
 *   output  user_vector  float [batch, d]       the final hidden state at the most recent known item (SASRec.encode)
 *   output  scores       float [batch, numItems + 1]  user_vector x item_embeddings^T; column 0 (padding) and
 *                                                     retired rows (deleted or replaced in a live catalog) = -inf
 *
 * The graph reproduces SASRec.encode/score without dropout, including the library's input rules, so a caller may
 * pad and truncate freely: entries that are 0 or not in 1..numItems are ignored wherever they sit, only the last
 * maxLength known items are used, and positions are counted from the end over the known items (the most recent
 * uses position row 0). `length` may be anything >= 1. A row with no known item gets the state of an empty input.
 *
 * How the graph computes it (B = batch, L = length):
 *   valid  = 0 < ids <= numItems;  after = number of valid entries to the right (reverse exclusive CumSum)
 *   keep   = valid and after < maxLength;  position = min(after, maxLength - 1)
 *   x0     = (E[keep ? ids : 0] + P[position]) * keep
 *   bias   = 0 where key j <= query i and keep[j], else -1e9  (B x 1 x L x L; finite, so padding rows stay finite)
 *   blocks as sasrec.ts: q = LN1(x); r = q + Attn(q, x, x) Wo + bo; f = LN2(r); x = f + W2 act(W1 f + b1) + b2,
 *          the last block with queries (and so r, f, FFN) only at the most recent kept entry (keep and after == 0)
 *   user_vector = LNf(that row, zero for a row without one);  scores = user_vector E^T + [-inf, 0, ...]
 * E is the model's item matrix as it scores (content + clipped delta, the content map applied, or the learned
 * table), stored once as the initializer `item_embeddings` ((numItems + 1) x d) and used by Gather and Gemm.
 */
import { DELTAREC_VERSION } from './artifact.js';
import {
  ONNX_FLOAT,
  ONNX_INT64,
  type OnnxAttribute,
  type OnnxModel,
  type OnnxNode,
  type OnnxTensor,
} from './onnx-proto.js';
import type { SASRec } from './sasrec.js';

export const ONNX_OPSET = 17;
const ONNX_IR_VERSION = 8;
const LN_EPS = 1e-5; // sasrec.ts
const MASKED = -1e9;
const GELU_C = Math.sqrt(2 / Math.PI); // the tanh approximation of kernels/reference.ts
const GELU_A = 0.044715;

export const SIDECAR_FORMAT = 'deltarec-onnx';

export interface OnnxSidecar {
  format: typeof SIDECAR_FORMAT;
  format_version: 1;
  deltarec_version: string;
  onnx_file: string;
  opset: number;
  model: {
    strategy: string;
    d: number;
    blocks: number;
    heads: number;
    max_length: number;
    num_items: number;
    num_warm: number;
  };
  inputs: Record<string, string>;
  outputs: Record<string, string>;
  feeding: string[];
  lexical_fusion: { weight: number; exported: false; note: string } | null;
  /** Rows whose score column is -inf: items deleted or replaced in the service's catalog (they still encode). */
  retired: number[];
  /** Item id of each index; item_ids[0] = '' is padding. Index i is input value i and scores column i. */
  item_ids: string[];
}

export interface OnnxExportInput {
  model: SASRec;
  /** Item id of each row, itemIds[0] = '' (the artifact's items.ids, or a live catalog's rowIds: an id may repeat,
   * its last row is current). */
  itemIds: readonly string[];
  numWarm: number;
  /** Rows never to recommend (items deleted or replaced in a live catalog); they still encode in histories. */
  retired?: readonly number[];
  /** File name of the .onnx the sidecar describes. */
  onnxFile: string;
  /** The lexical-fusion weight of a fused model (fusion is not part of the graph; the sidecar says so). */
  lexicalWeight?: number;
}

/** Builds nodes with unique names; every value gets a fresh name unless one is given. */
class GraphBuilder {
  readonly nodes: OnnxNode[] = [];
  readonly initializers: OnnxTensor[] = [];
  private count = 0;

  tensor(name: string, dims: readonly number[], data: Float32Array | BigInt64Array): string {
    this.initializers.push({ name, dims, data });
    return name;
  }

  int64(name: string, values: readonly number[], scalar = false): string {
    return this.tensor(name, scalar ? [] : [values.length], BigInt64Array.from(values, BigInt));
  }

  float(name: string, value: number): string {
    return this.tensor(name, [], Float32Array.of(value));
  }

  op(
    op: string,
    inputs: readonly string[],
    attributes?: Record<string, OnnxAttribute>,
    output?: string,
  ): string {
    const n = this.count++;
    const out = output ?? `${op.toLowerCase()}_${n}`;
    this.nodes.push({ op, inputs, outputs: [out], name: `${op}_${n}`, attributes });
    return out;
  }
}

/** The ONNX graph and sidecar of a SASRec model (see the file comment). */
export function sasrecToOnnx(input: OnnxExportInput): { model: OnnxModel; sidecar: OnnxSidecar } {
  const { model, itemIds, numWarm } = input;
  const c = model.config;
  const { d, heads, maxLength } = c;
  const numItems = model.numItems;
  const retired = [...new Set(input.retired ?? [])].sort((a, b) => a - b);
  if (retired.some((row) => !Number.isInteger(row) || row < 1 || row > numItems))
    throw new Error(`onnx export: retired rows must be in 1..${numItems}`);
  if (itemIds.length !== numItems + 1 || itemIds[0] !== '') {
    throw new Error(
      `onnx export: ${itemIds.length} item ids for a model of ${numItems} items (expected numItems + 1, the first '')`,
    );
  }
  const g = new GraphBuilder();
  const params = new Map(model.params.list.map((t) => [t.name, t]));
  const param = (name: string): string => {
    const t = params.get(name)!;
    return g.tensor(name, t.shape, t.data);
  };

  const items = g.tensor('item_embeddings', [numItems + 1, d], model.itemEmbeddings());
  const positions = param('positions');
  const zero = g.int64('zero', [0], true);
  const one = g.int64('one', [1], true);
  const ids = 'item_ids';

  // Which entries are used, and their positions counted from the end.
  const valid = g.op('And', [
    g.op('Greater', [ids, zero]),
    g.op('LessOrEqual', [ids, g.int64('num_items', [numItems], true)]),
  ]);
  const after = g.op('CumSum', [g.op('Cast', [valid], { to: { int: ONNX_INT64 } }), one], {
    exclusive: { int: 1 },
    reverse: { int: 1 },
  });
  const keep = g.op('And', [valid, g.op('Less', [after, g.int64('max_length', [maxLength], true)])]);
  const position = g.op('Min', [after, g.int64('last_position', [maxLength - 1], true)]);
  const axisLast = g.int64('axes_last', [-1]);
  const keepColumn = g.op('Unsqueeze', [g.op('Cast', [keep], { to: { int: ONNX_FLOAT } }), axisLast]);
  const embedded = g.op('Add', [
    g.op('Gather', [items, g.op('Where', [keep, ids, zero])], { axis: { int: 0 } }),
    g.op('Gather', [positions, position], { axis: { int: 0 } }),
  ]);
  let x = g.op('Mul', [embedded, keepColumn]);

  // The most recent kept entry of each row: the only query the last block needs, and the user state.
  const isLast = g.op('And', [keep, g.op('Equal', [after, zero])]);
  const lastColumn = g.op('Unsqueeze', [g.op('Cast', [isLast], { to: { int: ONNX_FLOAT } }), axisLast]);
  const axesSeq = g.int64('axes_seq', [1]);
  // B x 1 x 1: 1, or 0 for a row without known items.
  const hasItems = g.op('ReduceSum', [lastColumn, axesSeq], { keepdims: { int: 1 } });

  // Additive attention biases, B x 1 x L x L before the last block and B x 1 x 1 x L in it: keys that are not kept
  // are masked, and keys after the query (causal); in the last block every kept key precedes the query.
  const zeroF = g.float('zero_f', 0);
  const masked = g.float('masked', MASKED);
  const keys = g.op('Unsqueeze', [keep, g.int64('axes_1_2', [1, 2])]);
  const lastBias = g.op('Where', [keys, zeroF, masked]);
  let causalBias = '';
  if (c.blocks > 1) {
    const length = g.op('Gather', [g.op('Shape', [ids]), one], { axis: { int: 0 } });
    const steps = g.op('Range', [zero, length, one]);
    const causal = g.op('LessOrEqual', [
      g.op('Unsqueeze', [steps, g.int64('axes_0', [0])]),
      g.op('Unsqueeze', [steps, g.int64('axes_1', [1])]),
    ]);
    causalBias = g.op('Where', [g.op('And', [causal, keys]), zeroF, masked]);
  }

  const headShape = g.int64('head_shape', [0, 0, heads, d / heads]);
  const modelShape = g.int64('model_shape', [0, 0, d]);
  const attentionScale = g.float('attention_scale', 1 / Math.sqrt(d / heads));
  const layerNorm = (value: string, prefix: string, output?: string) =>
    g.op(
      'LayerNormalization',
      [value, param(`${prefix}.gamma`), param(`${prefix}.beta`)],
      { axis: { int: -1 }, epsilon: { float: LN_EPS } },
      output,
    );
  const linear = (value: string, w: string, b: string) =>
    g.op('Add', [g.op('MatMul', [value, param(w)]), param(b)]);
  const splitHeads = (value: string, perm: number[]) =>
    g.op('Transpose', [g.op('Reshape', [value, headShape])], { perm: { ints: perm } });

  const gelu = c.activation === 'gelu' ? geluConstants(g) : null;
  for (let l = 0; l < c.blocks; l++) {
    const p = `blocks.${l}`;
    // The last block runs its queries, FFN and norms on the most recent entry only (B x 1 x d).
    const lastBlock = l === c.blocks - 1;
    const queries = lastBlock
      ? g.op('ReduceSum', [g.op('Mul', [x, lastColumn]), axesSeq], { keepdims: { int: 1 } })
      : x;
    const q = layerNorm(queries, `${p}.ln1`);
    const qh = splitHeads(linear(q, `${p}.attn.wq`, `${p}.attn.bq`), [0, 2, 1, 3]);
    const khT = splitHeads(linear(x, `${p}.attn.wk`, `${p}.attn.bk`), [0, 2, 3, 1]);
    const vh = splitHeads(linear(x, `${p}.attn.wv`, `${p}.attn.bv`), [0, 2, 1, 3]);
    const logits = g.op('Add', [
      g.op('Mul', [g.op('MatMul', [qh, khT]), attentionScale]),
      lastBlock ? lastBias : causalBias,
    ]);
    const probabilities = g.op('Softmax', [logits], { axis: { int: -1 } });
    const attended = g.op('Reshape', [
      g.op('Transpose', [g.op('MatMul', [probabilities, vh])], { perm: { ints: [0, 2, 1, 3] } }),
      modelShape,
    ]);
    const r = g.op('Add', [q, linear(attended, `${p}.attn.wo`, `${p}.attn.bo`)]);
    const f = layerNorm(r, `${p}.ln2`);
    const h1 = linear(f, `${p}.ffn.w1`, `${p}.ffn.b1`);
    let act: string;
    if (!gelu) act = g.op('Relu', [h1]);
    else {
      // 0.5 x (1 + tanh(c (x + a x^3))): opset 17 has no Gelu.
      const cube = g.op('Mul', [g.op('Mul', [h1, h1]), h1]);
      const inner = g.op('Mul', [g.op('Add', [h1, g.op('Mul', [cube, gelu.a])]), gelu.c]);
      act = g.op('Mul', [g.op('Mul', [h1, gelu.half]), g.op('Add', [g.op('Tanh', [inner]), gelu.one])]);
    }
    x = g.op('Add', [f, linear(act, `${p}.ffn.w2`, `${p}.ffn.b2`)]);
  }

  // A row without known items gets the final norm of a zero row, as SASRec.encode.
  const last = g.op('Squeeze', [g.op('Mul', [x, hasItems]), axesSeq]);
  const user = layerNorm(last, 'final_ln', 'user_vector');
  const paddingColumn = new Float32Array(numItems + 1);
  for (const row of [0, ...retired]) paddingColumn[row] = -Infinity;
  const padding = g.tensor('padding_column', [numItems + 1], paddingColumn);
  g.op('Gemm', [user, items, padding], { transB: { int: 1 } }, 'scores');

  const doc =
    `deltarec ${DELTAREC_VERSION} SASRec (${c.strategy}, d ${d}, ${c.blocks} blocks, ${heads} heads, ` +
    `max length ${maxLength}, ${numItems} items). Feed item indices from the sidecar JSON.`;
  const onnx: OnnxModel = {
    irVersion: ONNX_IR_VERSION,
    opsetVersion: ONNX_OPSET,
    producerName: 'deltarec',
    producerVersion: DELTAREC_VERSION,
    doc,
    graph: {
      name: 'deltarec_sasrec',
      doc,
      nodes: g.nodes,
      initializers: g.initializers,
      inputs: [{ name: ids, elemType: ONNX_INT64, dims: ['batch', 'length'] }],
      outputs: [
        { name: 'user_vector', elemType: ONNX_FLOAT, dims: ['batch', d] },
        { name: 'scores', elemType: ONNX_FLOAT, dims: ['batch', numItems + 1] },
      ],
    },
    metadata: { strategy: c.strategy, max_length: String(maxLength), num_warm: String(numWarm) },
  };
  return { model: onnx, sidecar: sidecarOf(input, retired) };
}

function geluConstants(g: GraphBuilder) {
  return {
    a: g.float('gelu_a', GELU_A),
    c: g.float('gelu_c', GELU_C),
    half: g.float('half', 0.5),
    one: g.float('one_f', 1),
  };
}

function sidecarOf(input: OnnxExportInput, retired: number[]): OnnxSidecar {
  const { model, numWarm } = input;
  const c = model.config;
  const weight = input.lexicalWeight ?? 0;
  return {
    format: SIDECAR_FORMAT,
    format_version: 1,
    deltarec_version: DELTAREC_VERSION,
    onnx_file: input.onnxFile,
    opset: ONNX_OPSET,
    model: {
      strategy: c.strategy,
      d: c.d,
      blocks: c.blocks,
      heads: c.heads,
      max_length: c.maxLength,
      num_items: model.numItems,
      num_warm: numWarm,
    },
    inputs: {
      item_ids:
        'int64 [batch, length]: item indices (the position of the id in item_ids), most recent last, 0 = padding',
    },
    outputs: {
      user_vector: `float32 [batch, ${c.d}]: the user state after the most recent known item`,
      scores: `float32 [batch, ${model.numItems + 1}]: user_vector . item embedding; column i scores item_ids[i], column 0 and the retired columns are -inf`,
    },
    feeding: [
      'Map each id of a history to its index in item_ids (an id listed twice: its last index); unknown ids can be dropped or given index 0.',
      'Put the most recent item last and pad rows to a common length with 0 (left padding is customary; 0 is ignored anywhere).',
      'Positions are not an input: the graph counts them from the most recent known item, as the model does.',
      `Longer histories need no truncation: the graph keeps the last ${c.maxLength} known items, as the library does.`,
      'A row with no known item returns the empty-input state; the library recommends nothing for it.',
      'Indices listed in retired (items deleted or replaced in the service) score -inf but still count in histories.',
      `Indices ${numWarm + 1}..${model.numItems} are cold items (no training interactions); drop their columns to recommend warm items only.`,
      "To match deltarec's recommend: set the scores of the history's own items to -inf (exclude seen), then take the top k.",
    ],
    lexical_fusion:
      weight > 0
        ? {
            weight,
            exported: false,
            note: 'The model was saved with lexical fusion; the graph holds the unfused SASRec scores (fusion needs the TF-IDF rows and is not exported).',
          }
        : null,
    retired,
    item_ids: [...input.itemIds],
  };
}
