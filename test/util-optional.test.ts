import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { importOptional, installCommand } from '../src/util/optional.js';

// Modules outside this repository, so Node's real resolution cannot find the packages they import.
const dir = mkdtempSync(join(tmpdir(), 'deltarec-optional-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function moduleImporting(name: string): string {
  const path = join(dir, `${name.replace(/\W/g, '_')}.mjs`);
  writeFileSync(path, `export * from '${name}';\n`);
  return pathToFileURL(path).href;
}

test('a missing optional package is reported once, with the feature and the install command', async () => {
  const url = moduleImporting('@huggingface/transformers');
  await assert.rejects(
    importOptional('@huggingface/transformers', 'the local transformer encoder', () => import(url)),
    (error: Error) => {
      assert.equal(
        error.message,
        'the local transformer encoder needs the optional package @huggingface/transformers, which is not ' +
          'installed; install it next to deltarec: npm install "@huggingface/transformers@^4.3.2"',
      );
      assert.equal((error.cause as { code?: string }).code, 'ERR_MODULE_NOT_FOUND');
      return true;
    },
  );
  assert.equal(installCommand('@huggingface/transformers'), 'npm install "@huggingface/transformers@^4.3.2"');
});

test('any other failure (a dependency of the package missing) is rethrown unchanged', async () => {
  const url = moduleImporting('deltarec-no-such-dependency');
  await assert.rejects(
    importOptional('@huggingface/transformers', 'feature', () => import(url)),
    (error: Error & { code?: string }) =>
      error.code === 'ERR_MODULE_NOT_FOUND' && /'deltarec-no-such-dependency'/.test(error.message),
  );
  const broken = new Error('the package threw while loading');
  await assert.rejects(
    importOptional('@huggingface/transformers', 'feature', () => Promise.reject(broken)),
    (error) => error === broken,
  );
});
