/** An error in input data, naming the file and, where known, the line (1-based) and the field. */
export class DataError extends Error {
  readonly file: string;
  readonly line: number | null;
  readonly field: string | null;

  constructor(file: string, message: string, line: number | null = null, field: string | null = null) {
    const where = line === null ? file : `${file}:${line}`;
    super(`${where}: ${field === null ? '' : `field '${field}': `}${message}`);
    this.name = 'DataError';
    this.file = file;
    this.line = line;
    this.field = field;
  }
}
