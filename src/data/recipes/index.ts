/** The paper's public datasets, each from its original files: `loadRecipe('amazon-beauty', { reviews, meta })`. */
import { loadAmazonM2, type AmazonM2Options } from './amazon-m2.js';
import { loadAmazonBeauty, type BeautyOptions } from './beauty.js';
import type { RecipeResult } from './common.js';
import { loadZvuk, type ZvukOptions } from './zvuk.js';

export type { RecipeResult } from './common.js';
export { loadAmazonBeauty, loadAmazonM2, loadZvuk };
export type { AmazonM2Options, BeautyOptions, ZvukOptions };

export const RECIPES = ['amazon-beauty', 'amazon-m2', 'zvuk'] as const;
export type RecipeName = (typeof RECIPES)[number];

export async function loadRecipe(name: string, options: Record<string, unknown>): Promise<RecipeResult> {
  const need = (keys: string[]): void => {
    const missing = keys.filter((k) => typeof options[k] !== 'string');
    if (missing.length) throw new Error(`recipe '${name}' needs file paths for: ${missing.join(', ')}`);
  };
  switch (name) {
    case 'amazon-beauty':
      need(['reviews', 'meta']);
      return loadAmazonBeauty(options as unknown as BeautyOptions);
    case 'amazon-m2':
      need(['sessions', 'products']);
      return loadAmazonM2(options as unknown as AmazonM2Options);
    case 'zvuk':
      need(['interactions', 'vectors']);
      return loadZvuk(options as unknown as ZvukOptions);
    default:
      throw new Error(`unknown recipe '${name}' (known: ${RECIPES.join(', ')})`);
  }
}
