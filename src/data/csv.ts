/**
 * Byte-level CSV/TSV tokenizer over Buffers (RFC 4180 quoting: fields may be quoted, `""` inside quotes is a quote,
 * quoted fields may contain delimiters and newlines; CRLF and LF line ends). It never builds per-line strings: a
 * record is exposed as field offsets into the current buffer, so numeric fields and ids can be read from bytes.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createGunzip } from 'node:zlib';
import { DataError } from './errors.js';

const QUOTE = 34;
const LF = 10;
const CR = 13;
const CHUNK_BYTES = 1 << 22;
const MAX_RECORD_BYTES = 64 << 20;

export class CsvScanner {
  /** Field i of the current record is buf[starts[i] .. ends[i]) (quotes stripped). */
  starts = new Int32Array(32);
  ends = new Int32Array(32);
  /** 1 when field i was quoted and contains `""` escapes (use fieldString to decode it). */
  escaped = new Uint8Array(32);
  nFields = 0;
  /** Physical line (1-based) where the current record starts. */
  line = 1;
  /** Field names for error messages, once the header is known. */
  header: string[] = [];
  private extraLines = 0;

  constructor(
    readonly delimiter: number,
    readonly file: string,
  ) {}

  /**
   * Calls onRecord for every complete record in buf (empty lines skipped) and returns the offset of the first byte
   * not consumed (the start of an incomplete last record). With final = true the buffer end ends the last record.
   */
  scan(buf: Buffer, final: boolean, onRecord: (buf: Buffer) => void): number {
    const end = buf.length;
    let pos = 0;
    while (pos < end) {
      const next = this.parseRecord(buf, pos, end, final);
      if (next < 0) break;
      const emptyLine = this.nFields === 1 && this.starts[0] === this.ends[0] && this.starts[0] === pos;
      if (!emptyLine) onRecord(buf);
      this.line += 1 + this.extraLines;
      pos = next;
    }
    return pos;
  }

  /**
   * Parses the one record at buf[pos..] into starts/ends/nFields and returns the offset after it (-1 if the buffer
   * ends first and final is false). Call endRecord() after handling it. For callers with their own fast path.
   */
  parseOne(buf: Buffer, pos: number, final: boolean): number {
    return this.parseRecord(buf, pos, buf.length, final);
  }

  /** Advances the line counter past the record parsed last (including line breaks inside quoted fields). */
  endRecord(): void {
    this.line += 1 + this.extraLines;
  }

  fieldString(buf: Buffer, i: number): string {
    const s = buf.toString('utf8', this.starts[i], this.ends[i]);
    return this.escaped[i] ? s.replaceAll('""', '"') : s;
  }

  fieldName(i: number): string {
    return this.header[i] ?? `#${i + 1}`;
  }

  private grow(): void {
    const n = this.starts.length * 2;
    const starts = new Int32Array(n);
    const ends = new Int32Array(n);
    const escaped = new Uint8Array(n);
    starts.set(this.starts);
    ends.set(this.ends);
    escaped.set(this.escaped);
    this.starts = starts;
    this.ends = ends;
    this.escaped = escaped;
  }

  /** Parses one record at buf[start..]; returns the offset after its line end, or -1 if the buffer ends first. */
  private parseRecord(buf: Buffer, start: number, end: number, final: boolean): number {
    const d = this.delimiter;
    let p = start;
    let nf = 0;
    this.extraLines = 0;
    for (;;) {
      if (nf === this.starts.length) this.grow();
      if (p < end && buf[p] === QUOTE) {
        let q = p + 1;
        let esc = 0;
        for (;;) {
          if (q >= end) {
            if (!final) return -1;
            throw new DataError(this.file, 'unterminated quoted field', this.line, this.fieldName(nf));
          }
          const c = buf[q];
          if (c === QUOTE) {
            if (q + 1 < end) {
              if (buf[q + 1] === QUOTE) {
                esc = 1;
                q += 2;
                continue;
              }
            } else if (!final) return -1;
            break;
          }
          if (c === LF) this.extraLines++;
          q++;
        }
        this.starts[nf] = p + 1;
        this.ends[nf] = q;
        this.escaped[nf] = esc;
        p = q + 1;
        if (p < end && buf[p] === CR) p++;
        if (p >= end && !final) return -1;
        if (p < end && buf[p] !== d && buf[p] !== LF) {
          throw new DataError(
            this.file,
            'unexpected character after a closing quote',
            this.line,
            this.fieldName(nf),
          );
        }
      } else {
        let q = p;
        while (q < end) {
          const c = buf[q];
          if (c === d || c === LF) break;
          q++;
        }
        if (q >= end && !final) return -1;
        let fieldEnd = q;
        if (fieldEnd > p && buf[fieldEnd - 1] === CR && (q >= end || buf[q] === LF)) fieldEnd--;
        this.starts[nf] = p;
        this.ends[nf] = fieldEnd;
        this.escaped[nf] = 0;
        p = q;
      }
      nf++;
      if (p >= end) {
        this.nFields = nf;
        return end;
      }
      if (buf[p] === d) {
        p++;
        continue;
      }
      this.nFields = nf; // buf[p] is LF
      return p + 1;
    }
  }
}

/** Throws a DataError naming the file when it does not exist or is not a regular file. */
export async function checkFile(path: string): Promise<number> {
  try {
    const info = await stat(path);
    if (!info.isFile()) throw new DataError(path, 'not a regular file');
    return info.size;
  } catch (error) {
    if (error instanceof DataError) throw error;
    throw new DataError(path, `cannot read file (${(error as NodeJS.ErrnoException).code ?? String(error)})`);
  }
}

/** The file's bytes as a stream of chunks, gunzipped when gzip is set. */
export async function* readChunks(path: string, gzip: boolean): AsyncGenerator<Buffer> {
  const raw = createReadStream(path, { highWaterMark: CHUNK_BYTES });
  if (!gzip) {
    for await (const chunk of raw) yield chunk as Buffer;
    return;
  }
  const gunzip = createGunzip({ chunkSize: 1 << 20 });
  raw.on('error', (error) => gunzip.destroy(error));
  raw.pipe(gunzip);
  try {
    for await (const chunk of gunzip) yield chunk as Buffer;
  } catch (error) {
    throw new DataError(path, `cannot decompress (${(error as Error).message})`);
  } finally {
    raw.destroy();
  }
}

/**
 * Feeds a file to scan(buf, final) chunk by chunk; scan returns how many bytes of buf it consumed (whole records)
 * and the rest is carried into the next call. Returns the number of bytes read.
 */
export async function scanChunks(
  path: string,
  gzip: boolean,
  scanner: CsvScanner,
  scan: (buf: Buffer, final: boolean) => number,
): Promise<number> {
  let tail: Buffer | null = null;
  let bytes = 0;
  for await (const chunk of readChunks(path, gzip)) {
    bytes += chunk.length;
    const buf: Buffer = tail ? Buffer.concat([tail, chunk]) : chunk;
    const used = scan(buf, false);
    tail = used < buf.length ? buf.subarray(used) : null;
    if (tail && tail.length > MAX_RECORD_BYTES) {
      throw new DataError(path, 'record longer than 64 MB (unterminated quoted field?)', scanner.line);
    }
  }
  if (tail) scan(tail, true);
  return bytes;
}

/** Runs the scanner over a whole file, chunk by chunk. Returns the number of bytes read. */
export function scanFile(
  path: string,
  gzip: boolean,
  scanner: CsvScanner,
  onRecord: (buf: Buffer) => void,
): Promise<number> {
  return scanChunks(path, gzip, scanner, (buf, final) => scanner.scan(buf, final, onRecord));
}

/**
 * Parses a decimal number from bytes: fast path for [-+]digits[.digits], otherwise JavaScript number syntax on the
 * trimmed text. Returns NaN for empty or unparsable text.
 */
export function parseNumberBytes(buf: Buffer, s: number, e: number): number {
  let i = s;
  let negative = false;
  if (i < e && (buf[i] === 45 || buf[i] === 43)) {
    negative = buf[i] === 45;
    i++;
  }
  let value = 0;
  let digits = 0;
  while (i < e) {
    const c = buf[i] - 48;
    if (c < 0 || c > 9) break;
    value = value * 10 + c;
    digits++;
    i++;
  }
  let scale = 1;
  if (i < e && buf[i] === 46) {
    i++;
    while (i < e) {
      const c = buf[i] - 48;
      if (c < 0 || c > 9) break;
      value = value * 10 + c;
      scale *= 10;
      digits++;
      i++;
    }
  }
  // Exact while value stays below 2^53 (15 digits); value / scale is then correctly rounded, like Number(text).
  if (i === e && digits > 0 && digits <= 15) {
    const v = value / scale;
    return negative ? -v : v;
  }
  const text = buf.toString('latin1', s, e).trim();
  return text === '' ? NaN : Number(text);
}
