/**
 * Writes a tiny, randomly initialized BERT-style model directory that `@huggingface/transformers` can load offline:
 * config.json, tokenizer.json + tokenizer_config.json (a small lowercase WordPiece vocabulary) and onnx/model.onnx.
 * The ONNX graph is encoded here by hand (a minimal protobuf writer; no exporter is available in Node):
 *
 *   last_hidden_state = tanh(LayerNorm((E_word[input_ids] + E_type[token_type_ids]) * attention_mask) W + b)
 *
 * It is not a useful language model; it exists so the transformer encoder path can be tested end to end without
 * downloads. Weights are drawn from a seeded generator.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Random } from '../util/random.js';

/** Protocol-buffer message writer (just the wire types ONNX needs). */
class Proto {
  private readonly parts: Uint8Array[] = [];

  private key(field: number, wire: number): void {
    this.raw(varint(BigInt((field << 3) | wire)));
  }

  private raw(bytes: Uint8Array): void {
    this.parts.push(bytes);
  }

  int(field: number, value: number): this {
    this.key(field, 0);
    this.raw(varint(BigInt.asUintN(64, BigInt(value))));
    return this;
  }

  float(field: number, value: number): this {
    this.key(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, value, true);
    this.raw(b);
    return this;
  }

  bytes(field: number, value: Uint8Array): this {
    this.key(field, 2);
    this.raw(varint(BigInt(value.length)));
    this.raw(value);
    return this;
  }

  string(field: number, value: string): this {
    return this.bytes(field, new TextEncoder().encode(value));
  }

  message(field: number, value: Proto): this {
    return this.bytes(field, value.finish());
  }

  finish(): Uint8Array {
    const total = this.parts.reduce((n, p) => n + p.length, 0);
    const out = new Uint8Array(total);
    let at = 0;
    for (const p of this.parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }
}

function varint(value: bigint): Uint8Array {
  const out: number[] = [];
  let v = value;
  do {
    let byte = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) byte |= 0x80;
    out.push(byte);
  } while (v > 0n);
  return Uint8Array.from(out);
}

const FLOAT = 1;
const INT64 = 7;

function tensor(name: string, dims: number[], data: Float32Array | BigInt64Array): Proto {
  const t = new Proto();
  for (const d of dims) t.int(1, d);
  t.int(2, data instanceof Float32Array ? FLOAT : INT64);
  t.string(8, name);
  t.bytes(9, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  return t;
}

function valueInfo(name: string, elemType: number, dims: (number | string)[]): Proto {
  const shape = new Proto();
  for (const d of dims)
    shape.message(1, typeof d === 'number' ? new Proto().int(1, d) : new Proto().string(2, d));
  const tensorType = new Proto().int(1, elemType).message(2, shape);
  return new Proto().string(1, name).message(2, new Proto().message(1, tensorType));
}

type Attribute = { name: string; int: number } | { name: string; float: number };

function node(op: string, inputs: string[], outputs: string[], attributes: Attribute[] = []): Proto {
  const n = new Proto();
  for (const i of inputs) n.string(1, i);
  for (const o of outputs) n.string(2, o);
  n.string(3, `${op}_${outputs[0]}`);
  n.string(4, op);
  for (const a of attributes) {
    const attr = new Proto().string(1, a.name);
    if ('int' in a) attr.int(3, a.int).int(20, 2);
    else attr.float(2, a.float).int(20, 1);
    n.message(5, attr);
  }
  return n;
}

export interface TinyBertOptions {
  hidden?: number;
  seed?: number;
  /** Extra whole words for the vocabulary (lowercase). */
  words?: string[];
}

const SPECIAL = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'];
const BASE_WORDS = [
  'the',
  'and',
  'for',
  'with',
  'oil',
  'hair',
  'skin',
  'cream',
  'shampoo',
  'nail',
  'polish',
  'red',
  'blue',
];

/** The vocabulary: special tokens, words, single characters and their ## continuations. */
export function tinyBertVocabulary(words: string[] = []): string[] {
  const chars = 'abcdefghijklmnopqrstuvwxyz0123456789'.split('');
  const punctuation = '.,;:!?-\'"()&/%+#'.split('');
  const vocab = [
    ...SPECIAL,
    ...new Set([...BASE_WORDS, ...words]),
    ...chars,
    ...chars.map((c) => `##${c}`),
    ...punctuation,
  ];
  return [...new Set(vocab)];
}

/** Writes the model directory (created if needed). Returns the vocabulary size and hidden size. */
export async function writeTinyBertModel(
  dir: string,
  options: TinyBertOptions = {},
): Promise<{ vocabSize: number; hidden: number }> {
  const hidden = options.hidden ?? 16;
  const vocab = tinyBertVocabulary(options.words);
  const V = vocab.length;
  const random = new Random(options.seed ?? 0);
  const gaussian = (n: number, scale: number) =>
    Float32Array.from({ length: n }, () => random.nextGaussian() * scale);
  const ones = new Float32Array(hidden).fill(1);

  const graph = new Proto();
  graph.message(1, node('Gather', ['word_embeddings', 'input_ids'], ['word']));
  graph.message(1, node('Gather', ['token_type_embeddings', 'token_type_ids'], ['type']));
  graph.message(1, node('Add', ['word', 'type'], ['embedded']));
  graph.message(1, node('Cast', ['attention_mask'], ['mask_float'], [{ name: 'to', int: FLOAT }]));
  graph.message(1, node('Unsqueeze', ['mask_float', 'mask_axes'], ['mask']));
  graph.message(1, node('Mul', ['embedded', 'mask'], ['masked']));
  graph.message(
    1,
    node(
      'LayerNormalization',
      ['masked', 'ln_scale', 'ln_bias'],
      ['normed'],
      [
        { name: 'axis', int: -1 },
        { name: 'epsilon', float: 1e-12 },
      ],
    ),
  );
  graph.message(1, node('MatMul', ['normed', 'dense_weight'], ['projected']));
  graph.message(1, node('Add', ['projected', 'dense_bias'], ['pre_activation']));
  graph.message(1, node('Tanh', ['pre_activation'], ['last_hidden_state']));
  graph.string(2, 'tiny_bert');
  graph.message(5, tensor('word_embeddings', [V, hidden], gaussian(V * hidden, 1)));
  graph.message(5, tensor('token_type_embeddings', [2, hidden], gaussian(2 * hidden, 0.1)));
  graph.message(5, tensor('mask_axes', [1], BigInt64Array.from([2n])));
  graph.message(5, tensor('ln_scale', [hidden], ones));
  graph.message(5, tensor('ln_bias', [hidden], gaussian(hidden, 0.1)));
  graph.message(
    5,
    tensor('dense_weight', [hidden, hidden], gaussian(hidden * hidden, 1 / Math.sqrt(hidden))),
  );
  graph.message(5, tensor('dense_bias', [hidden], gaussian(hidden, 0.1)));
  for (const name of ['input_ids', 'attention_mask', 'token_type_ids'])
    graph.message(11, valueInfo(name, INT64, ['batch_size', 'sequence_length']));
  graph.message(12, valueInfo('last_hidden_state', FLOAT, ['batch_size', 'sequence_length', hidden]));
  const model = new Proto()
    .int(1, 8) // ir_version
    .string(2, 'deltarec-tiny-bert')
    .message(7, graph)
    .message(8, new Proto().string(1, '').int(2, 17));

  await mkdir(join(dir, 'onnx'), { recursive: true });
  await writeFile(join(dir, 'onnx', 'model.onnx'), model.finish());
  await writeFile(
    join(dir, 'config.json'),
    JSON.stringify(
      {
        model_type: 'bert',
        architectures: ['BertModel'],
        hidden_size: hidden,
        num_hidden_layers: 1,
        num_attention_heads: 1,
        intermediate_size: hidden,
        vocab_size: V,
        max_position_embeddings: 128,
        type_vocab_size: 2,
        pad_token_id: 0,
      },
      null,
      1,
    ),
  );
  const special = (token: string) => ({
    id: vocab.indexOf(token),
    content: token,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  });
  const tokenizer = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: SPECIAL.map(special),
    normalizer: {
      type: 'BertNormalizer',
      clean_text: true,
      handle_chinese_chars: true,
      strip_accents: null,
      lowercase: true,
    },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: {
      type: 'TemplateProcessing',
      single: [
        { SpecialToken: { id: '[CLS]', type_id: 0 } },
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: '[SEP]', type_id: 0 } },
      ],
      pair: [
        { SpecialToken: { id: '[CLS]', type_id: 0 } },
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: '[SEP]', type_id: 0 } },
        { Sequence: { id: 'B', type_id: 1 } },
        { SpecialToken: { id: '[SEP]', type_id: 1 } },
      ],
      special_tokens: Object.fromEntries(
        ['[CLS]', '[SEP]'].map((t) => [t, { id: t, ids: [vocab.indexOf(t)], tokens: [t] }]),
      ),
    },
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: {
      type: 'WordPiece',
      unk_token: '[UNK]',
      continuing_subword_prefix: '##',
      max_input_chars_per_word: 100,
      vocab: Object.fromEntries(vocab.map((t, i) => [t, i])),
    },
  };
  await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(tokenizer));
  await writeFile(
    join(dir, 'tokenizer_config.json'),
    JSON.stringify(
      {
        tokenizer_class: 'BertTokenizer',
        do_lower_case: true,
        model_max_length: 128,
        cls_token: '[CLS]',
        sep_token: '[SEP]',
        pad_token: '[PAD]',
        unk_token: '[UNK]',
        mask_token: '[MASK]',
      },
      null,
      1,
    ),
  );
  return { vocabSize: V, hidden };
}
