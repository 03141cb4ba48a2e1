// The Secret `<n>-secret`: the resolver.conf with the $SYS account and its password.
//
// The password is generated once and must survive every later reconcile, so besides rendering
// the Secret this module reads the password back out of an existing one.
import type { V1Secret } from '@kubernetes/client-node';
import type { KubeObject } from '../base/object.ts';
import type { RenderContext, RenderInput } from './context.ts';
import { childMetadata } from './labels.ts';
import { objectNames } from './names.ts';
import { RESOLVER_CONF_KEY, renderResolverConf } from './nats-conf.ts';

/**
 * The Secret with base64 `data`, not `stringData`: the apiserver folds stringData into data on
 * write, so a server-side apply of stringData never matches what is stored, and the field
 * manager would own a field that no read ever shows.
 */
export function renderSecret(input: RenderInput, context: RenderContext): V1Secret & KubeObject {
  const resolverConf = renderResolverConf(context.systemAccountPassword);
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: childMetadata(input, objectNames(input.name).secret),
    type: 'Opaque',
    data: { [RESOLVER_CONF_KEY]: Buffer.from(resolverConf, 'utf8').toString('base64') },
  } satisfies V1Secret;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

// `password: "…"` (double or single quotes, as ours and upstream's write it) or a bare token;
// the key may be quoted too (`"password": "…"`, JSON style), which nats.conf accepts.
const PASSWORD_PATTERN =
  /\bpassword["']?\s*[:=]?\s*(?:"((?:[^"\\\n]|\\.)*)"|'([^'\n]*)'|([^\s,}\]"'#]+))/;

const SIMPLE_ESCAPES: ReadonlyMap<string, string> = new Map([
  ['t', '\t'],
  ['n', '\n'],
  ['r', '\r'],
  ['"', '"'],
  ['\\', '\\'],
]);
const COMMENT_LINE = /^\s*(#|\/\/).*$/gm;

/** Undoes nats.conf's double-quoted string escapes: \xXX (UTF-8 bytes) and \t \n \r \" \\. */
function unescapeConfString(escaped: string): string {
  const bytes: number[] = [];
  const utf8 = new TextEncoder();
  for (let i = 0; i < escaped.length; i++) {
    const char = escaped.charAt(i);
    const next = escaped.charAt(i + 1);
    const hex = escaped.slice(i + 2, i + 4);
    const simple = char === '\\' ? SIMPLE_ESCAPES.get(next) : undefined;
    if (char === '\\' && next === 'x' && /^[0-9a-fA-F]{2}$/.test(hex)) {
      bytes.push(Number.parseInt(hex, 16));
      i += 3;
    } else if (simple !== undefined) {
      bytes.push(...utf8.encode(simple));
      i += 1;
    } else {
      bytes.push(...utf8.encode(char));
    }
  }
  return new TextDecoder().decode(new Uint8Array(bytes));
}

/**
 * The $SYS password in an existing Secret (as read from the API, base64 `data`), or undefined
 * when the Secret or its resolver.conf is missing or holds no password, so that the shell only
 * generates a new one when there is nothing to keep. Reads Secrets written by upstream as well.
 */
export function systemAccountPasswordFrom(secret: unknown): string | undefined {
  if (!isRecord(secret) || !isRecord(secret.data)) return undefined;
  const encoded = secret.data[RESOLVER_CONF_KEY];
  if (typeof encoded !== 'string') return undefined;
  // Comments go first: ours mentions "the password" in prose.
  const resolverConf = Buffer.from(encoded, 'base64').toString('utf8').replace(COMMENT_LINE, '');
  const match = PASSWORD_PATTERN.exec(resolverConf);
  if (match === null) return undefined;
  const [, doubleQuoted, singleQuoted, bare] = match;
  const password =
    doubleQuoted !== undefined ? unescapeConfString(doubleQuoted) : (singleQuoted ?? bare ?? '');
  return password === '' ? undefined : password;
}
