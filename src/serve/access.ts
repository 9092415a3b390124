/**
 * Access control of the service: bearer tokens checked in an onRequest hook, so every route, including routes
 * added later, is covered by its class:
 *
 *   write  : every method other than GET/HEAD (POST/DELETE /items ...) and anything under /admin/: the write token;
 *   read   : GET routes, POST /recommend and /metrics: the read token when one is set (the write token works too),
 *            open otherwise;
 *   public : GET /health (load balancers probe it without credentials).
 *
 * A route can declare its class with `config: { access: 'read' | 'public' }`; /admin/ routes are write whatever
 * they declare. Without a token the answer is 401 (with WWW-Authenticate), with a token that is not accepted 403;
 * neither says which token exists or what was wrong with it. Tokens are compared as SHA-256 digests with
 * timingSafeEqual, so the time taken does not depend on how much of a guess matched.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { isIP } from 'node:net';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

export type Access = 'public' | 'read' | 'write';

export interface AccessTokens {
  write: string | null;
  read: string | null;
}

declare module 'fastify' {
  interface FastifyContextConfig {
    access?: Access;
  }
}

const MIN_TOKEN = 16;
const MAX_TOKEN = 4096;

/** Throws unless the token is 16 to 4096 visible ASCII characters. */
export function checkToken(token: string, source: string): string {
  if (token.length < MIN_TOKEN || token.length > MAX_TOKEN || !/^[\x21-\x7e]+$/.test(token)) {
    throw new Error(
      `${source}: a token must be ${MIN_TOKEN} to ${MAX_TOKEN} visible ASCII characters without spaces ` +
        `(e.g. the output of 'openssl rand -hex 32')`,
    );
  }
  return token;
}

/**
 * A token from `file` (surrounding whitespace trimmed) or else the environment variable; null when neither is set.
 * `warn` is told when the file can be read by other users.
 */
export async function loadToken(
  file: string | undefined,
  envName: string,
  warn: (message: string) => void,
): Promise<string | null> {
  if (file !== undefined) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (error) {
      throw new Error(`cannot read the token file ${file}: ${(error as Error).message}`, { cause: error });
    }
    if (((await stat(file)).mode & 0o077) !== 0)
      warn(`${file} can be read by other users; consider 'chmod 600 ${file}'`);
    return checkToken(text.trim(), file);
  }
  const value = process.env[envName];
  return value === undefined || value === '' ? null : checkToken(value, envName);
}

/** True for addresses that only this machine can reach. */
export function isLoopback(host: string): boolean {
  const bare = host.replace(/^\[|\]$/g, '');
  if (bare === 'localhost') return true;
  if (isIP(bare) === 4) return bare.startsWith('127.');
  if (isIP(bare) === 6) return bare === '::1' || /^::ffff:127\./i.test(bare);
  return false;
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

/** The access class of a request (routes not found fall back to the method rule). */
export function accessOf(request: FastifyRequest): Access {
  // The matched route's pattern, not the raw URL: '/%61dmin/x' routes to '/admin/x'.
  const path = request.routeOptions.url ?? request.url.split('?')[0];
  if (path === '/admin' || path.startsWith('/admin/')) return 'write';
  const declared = request.routeOptions.config?.access;
  if (declared) return declared;
  return request.method === 'GET' || request.method === 'HEAD' ? 'read' : 'write';
}

function deny(reply: FastifyReply, status: 401 | 403) {
  if (status === 401) reply.header('www-authenticate', 'Bearer realm="deltarec"');
  return reply.code(status).send({
    statusCode: status,
    error: status === 401 ? 'Unauthorized' : 'Forbidden',
    message:
      status === 401
        ? "this endpoint needs a token: send 'Authorization: Bearer <token>'"
        : 'the token is not accepted for this endpoint',
  });
}

/** Throws when the tokens cannot work together (a read token equal to the write token would grant writes). */
export function validateTokens(tokens: AccessTokens): void {
  for (const [name, token] of Object.entries(tokens))
    if (token !== null) checkToken(token, `the ${name} token`);
  if (tokens.write !== null && tokens.write === tokens.read)
    throw new Error('the read and the write token must differ');
}

/** Installs the onRequest hook (before any route is registered, so every route gets it). */
export function installAccessControl(app: FastifyInstance, tokens: AccessTokens): void {
  validateTokens(tokens);
  const write = tokens.write === null ? null : digest(tokens.write);
  const read = tokens.read === null ? null : digest(tokens.read);
  app.addHook('onRequest', async (request, reply) => {
    const access = accessOf(request);
    if (access === 'public') return;
    const accepted = access === 'write' ? [write] : [read, write];
    if (accepted[0] === null) return; // no token of this class configured: open
    const match = /^Bearer +(\S+) *$/i.exec(request.headers.authorization ?? '');
    if (!match) return deny(reply, 401);
    const given = digest(match[1]);
    let ok = false;
    for (const token of accepted) if (token && timingSafeEqual(given, token)) ok = true; // no early exit
    if (!ok) return deny(reply, 403);
  });
}
