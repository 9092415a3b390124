/**
 * Headless Chromium for the browser tests: Debian's `chromium` package driven by playwright-core, a fresh profile
 * per launch. Tests skip with BROWSER_SKIP (a message naming the package) where the browser is not installed.
 */
import { existsSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BrowserContext } from 'playwright-core';

/** The browser binary; DELTAREC_CHROMIUM overrides it (e.g. to see the skip on a machine that has one). */
export const CHROMIUM = process.env.DELTAREC_CHROMIUM ?? '/usr/bin/chromium';
export const BROWSER_SKIP = existsSync(CHROMIUM)
  ? false
  : `no browser at ${CHROMIUM}: install Debian's 'chromium' package (apt-get install -y chromium) to run the browser tests`;
/** Where the tests leave their screenshots (kept after the run). */
export const SCREENSHOTS = process.env.DELTAREC_SCREENSHOTS ?? join(tmpdir(), 'deltarec-screenshots');

/** A fresh headless Chromium with its own profile directory (removed by the caller with the returned dir). */
export async function launchBrowser(): Promise<{ context: BrowserContext; profile: string }> {
  const { chromium } = await import('playwright-core');
  const profile = await mkdtemp(join(tmpdir(), 'deltarec-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--no-first-run',
    ],
  });
  return { context, profile };
}
