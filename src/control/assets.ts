/**
 * Files the dashboard page loads from the admin listener itself: uPlot (MIT, the npm package
 * `uplot`, a dependency), served as one same-origin script with a Subresource Integrity hash,
 * its stylesheet inlined into the page (so the page's CSP admits it by hash). Nothing is
 * fetched from elsewhere and there is no build step: the files are read as npm installed them.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

function read(file: string): string | null {
  try {
    return readFileSync(require.resolve(`uplot/dist/${file}`), 'utf8');
  } catch {
    return null;
  }
}

const js = read('uPlot.iife.min.js');

/** The chart library, or null when the package is missing (the page then shows figures without charts). */
export const UPLOT_JS: string | null = js;
export const UPLOT_CSS: string = read('uPlot.min.css') ?? '';
/** `integrity` attribute value for the script tag. */
export const UPLOT_SRI: string = js === null ? '' : `sha384-${createHash('sha384').update(js).digest('base64')}`;
/** Path the page loads it from; the version in the query makes a long cache safe. */
export const UPLOT_PATH = '/dashboard/uplot.js';
export const UPLOT_URL = `${UPLOT_PATH}?v=${UPLOT_SRI.slice(7, 19).replace(/[^A-Za-z0-9]/g, '')}`;
