/**
 * A minimal protobuf writer for the ONNX messages the exporter emits (onnx/onnx.proto, IR version 8), so that ONNX
 * export needs no dependency. Only writing is supported, only the fields used below:
 *
 *   ModelProto         ir_version 1, producer_name 2, producer_version 3, doc_string 6, graph 7, opset_import 8,
 *                      metadata_props 14 (StringStringEntryProto: key 1, value 2)
 *   OperatorSetIdProto domain 1, version 2
 *   GraphProto         node 1, name 2, initializer 5, doc_string 10, input 11, output 12
 *   NodeProto          input 1, output 2, name 3, op_type 4, attribute 5
 *   AttributeProto     name 1, f 2, i 3, s 4, floats 7, ints 8, type 20
 *   TensorProto        dims 1, data_type 2, name 8, raw_data 9 (little-endian)
 *   ValueInfoProto     name 1, type 2 (TypeProto: tensor_type 1 = { elem_type 1, shape 2 }; TensorShapeProto:
 *                      dim 1 = { dim_value 1 | dim_param 2 })
 *
 * Wire format: each field is a varint key (field << 3 | wire type) followed by a varint (type 0), 4 little-endian
 * bytes (type 5) or a varint length and that many bytes (type 2: strings, bytes, nested messages, packed lists).
 * Negative int64 values are written as 10-byte two's-complement varints. Large tensor bytes are kept as views
 * (chunks), never copied, until the model is written out.
 */

const WIRE_VARINT = 0;
const WIRE_LENGTH = 2;
const WIRE_FIXED32 = 5;

/** The largest message protobuf implementations parse (2 GiB - 1). */
export const MAX_PROTOBUF_BYTES = 2 ** 31 - 1;

export class ProtoWriter {
  readonly chunks: Uint8Array[] = [];
  length = 0;

  private push(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    this.chunks.push(bytes);
    this.length += bytes.length;
  }

  private key(field: number, wire: number): void {
    this.push(varint((field << 3) | wire));
  }

  int(field: number, value: number): void {
    this.key(field, WIRE_VARINT);
    this.push(varint(value));
  }

  float(field: number, value: number): void {
    this.key(field, WIRE_FIXED32);
    const bytes = new Uint8Array(4);
    new DataView(bytes.buffer).setFloat32(0, value, true);
    this.push(bytes);
  }

  bytes(field: number, value: Uint8Array): void {
    this.key(field, WIRE_LENGTH);
    this.push(varint(value.length));
    this.push(value);
  }

  string(field: number, value: string): void {
    this.bytes(field, new TextEncoder().encode(value));
  }

  message(field: number, value: ProtoWriter): void {
    this.key(field, WIRE_LENGTH);
    this.push(varint(value.length));
    for (const chunk of value.chunks) this.push(chunk);
  }

  /** A packed repeated int64 field. */
  packedInts(field: number, values: readonly number[]): void {
    const body = new ProtoWriter();
    for (const v of values) body.push(varint(v));
    this.message(field, body);
  }

  /** A packed repeated float field. */
  packedFloats(field: number, values: readonly number[]): void {
    const bytes = new Uint8Array(values.length * 4);
    const view = new DataView(bytes.buffer);
    values.forEach((v, i) => view.setFloat32(i * 4, v, true));
    this.bytes(field, bytes);
  }
}

/** The varint encoding of an integer in the int64 range (negatives as 64-bit two's complement). */
export function varint(value: number): Uint8Array {
  if (!Number.isSafeInteger(value)) throw new Error(`protobuf: ${value} is not a safe integer`);
  let v = BigInt.asUintN(64, BigInt(value));
  const out: number[] = [];
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
  return Uint8Array.from(out);
}

// ---------------------------------------------------------------------------------------------------------------
// ONNX messages

/** TensorProto.DataType values used here. */
export const ONNX_FLOAT = 1;
export const ONNX_INT64 = 7;

export interface OnnxTensor {
  name: string;
  dims: readonly number[];
  data: Float32Array | BigInt64Array;
}

/** Attribute values: ints and floats are told apart explicitly (a JS number is either). */
export type OnnxAttribute =
  | { int: number }
  | { float: number }
  | { ints: readonly number[] }
  | { floats: readonly number[] }
  | { string: string };

export interface OnnxNode {
  op: string;
  inputs: readonly string[];
  outputs: readonly string[];
  name: string;
  attributes?: Record<string, OnnxAttribute>;
}

/** A graph input or output: a tensor of elemType with fixed (number) or symbolic (string) dimensions. */
export interface OnnxValueInfo {
  name: string;
  elemType: number;
  dims: readonly (number | string)[];
}

export interface OnnxGraph {
  name: string;
  doc: string;
  nodes: readonly OnnxNode[];
  initializers: readonly OnnxTensor[];
  inputs: readonly OnnxValueInfo[];
  outputs: readonly OnnxValueInfo[];
}

export interface OnnxModel {
  irVersion: number;
  opsetVersion: number;
  producerName: string;
  producerVersion: string;
  doc: string;
  graph: OnnxGraph;
  metadata: Record<string, string>;
}

const ATTRIBUTE_TYPE = { float: 1, int: 2, string: 3, floats: 6, ints: 7 } as const;

function tensorProto(t: OnnxTensor): ProtoWriter {
  const expected = t.dims.reduce((a, b) => a * b, 1);
  if (expected !== t.data.length) {
    throw new Error(
      `onnx: tensor '${t.name}' has ${t.data.length} values, dims [${t.dims}] need ${expected}`,
    );
  }
  const w = new ProtoWriter();
  for (const dim of t.dims) w.int(1, dim);
  w.int(2, t.data instanceof Float32Array ? ONNX_FLOAT : ONNX_INT64);
  w.string(8, t.name);
  w.bytes(9, littleEndianBytes(t.data));
  return w;
}

function littleEndianBytes(data: Float32Array | BigInt64Array): Uint8Array {
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] === 1)
    return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const bytes = new Uint8Array(data.byteLength);
  const view = new DataView(bytes.buffer);
  if (data instanceof Float32Array) data.forEach((v, i) => view.setFloat32(i * 4, v, true));
  else data.forEach((v, i) => view.setBigInt64(i * 8, v, true));
  return bytes;
}

function attributeProto(name: string, value: OnnxAttribute): ProtoWriter {
  const w = new ProtoWriter();
  w.string(1, name);
  if ('int' in value) {
    w.int(3, value.int);
    w.int(20, ATTRIBUTE_TYPE.int);
  } else if ('float' in value) {
    w.float(2, value.float);
    w.int(20, ATTRIBUTE_TYPE.float);
  } else if ('ints' in value) {
    w.packedInts(8, value.ints);
    w.int(20, ATTRIBUTE_TYPE.ints);
  } else if ('floats' in value) {
    w.packedFloats(7, value.floats);
    w.int(20, ATTRIBUTE_TYPE.floats);
  } else {
    w.string(4, value.string);
    w.int(20, ATTRIBUTE_TYPE.string);
  }
  return w;
}

function nodeProto(node: OnnxNode): ProtoWriter {
  const w = new ProtoWriter();
  for (const input of node.inputs) w.string(1, input);
  for (const output of node.outputs) w.string(2, output);
  w.string(3, node.name);
  w.string(4, node.op);
  for (const [name, value] of Object.entries(node.attributes ?? {}))
    w.message(5, attributeProto(name, value));
  return w;
}

function valueInfoProto(v: OnnxValueInfo): ProtoWriter {
  const shape = new ProtoWriter();
  for (const dim of v.dims) {
    const d = new ProtoWriter();
    if (typeof dim === 'number') d.int(1, dim);
    else d.string(2, dim);
    shape.message(1, d);
  }
  const tensorType = new ProtoWriter();
  tensorType.int(1, v.elemType);
  tensorType.message(2, shape);
  const type = new ProtoWriter();
  type.message(1, tensorType);
  const w = new ProtoWriter();
  w.string(1, v.name);
  w.message(2, type);
  return w;
}

function graphProto(g: OnnxGraph): ProtoWriter {
  const w = new ProtoWriter();
  for (const node of g.nodes) w.message(1, nodeProto(node));
  w.string(2, g.name);
  for (const t of g.initializers) w.message(5, tensorProto(t));
  w.string(10, g.doc);
  for (const v of g.inputs) w.message(11, valueInfoProto(v));
  for (const v of g.outputs) w.message(12, valueInfoProto(v));
  return w;
}

/** The serialized ModelProto as chunks (tensor bytes are views of the model's arrays) and its total length. */
export function encodeOnnxModel(m: OnnxModel): { chunks: Uint8Array[]; length: number } {
  const w = new ProtoWriter();
  w.int(1, m.irVersion);
  w.string(2, m.producerName);
  w.string(3, m.producerVersion);
  w.string(6, m.doc);
  w.message(7, graphProto(m.graph));
  const opset = new ProtoWriter();
  opset.string(1, '');
  opset.int(2, m.opsetVersion);
  w.message(8, opset);
  for (const [key, value] of Object.entries(m.metadata)) {
    const entry = new ProtoWriter();
    entry.string(1, key);
    entry.string(2, value);
    w.message(14, entry);
  }
  if (w.length > MAX_PROTOBUF_BYTES) {
    throw new Error(
      `onnx: the model is ${w.length} bytes, over protobuf's 2 GiB limit (a smaller d or catalog is needed)`,
    );
  }
  return { chunks: w.chunks, length: w.length };
}
