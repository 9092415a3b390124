/**
 * The one rule for item ids, applied by every route (POST /items, GET and DELETE /items/:id, the ids of
 * /recommend): 1 to MAX_ID_LENGTH characters (code points), not blank, no control characters, no lone surrogates.
 */

export const MAX_ID_LENGTH = 256;

/** Longest percent-encoded path segment that can hold a valid id (a 4-byte UTF-8 code point is 12 characters). */
export const MAX_ID_URL_LENGTH = MAX_ID_LENGTH * 12;

// eslint-disable-next-line no-control-regex -- control characters are what it looks for
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/u;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** What is wrong with an id, as the end of a sentence ("body.id <problem>"), or null for a valid one. */
export function idProblem(id: string): string | null {
  if (id.length === 0) return 'must not be empty';
  if (LONE_SURROGATE.test(id)) return 'must not contain a lone surrogate (invalid UTF-16)';
  if (id.length > MAX_ID_LENGTH) {
    // UTF-16 units >= code points: only a long string needs counting (this runs for every id of every request).
    let length = 0;
    for (let i = 0; i < id.length; i++) if ((id.charCodeAt(i) & 0xfc00) !== 0xdc00) length++;
    if (length > MAX_ID_LENGTH) return `must have at most ${MAX_ID_LENGTH} characters (has ${length})`;
  }
  const control = CONTROL.exec(id);
  if (control) {
    const code = control[0].codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0');
    return `must not contain control characters (U+${code} at ${control.index})`;
  }
  if (id.trim() === '') return 'must not be blank';
  return null;
}
