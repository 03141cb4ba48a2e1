// The nats.conf of the ConfigMap and the resolver.conf of the Secret, and the paths, ports and
// environment variables the StatefulSet has to provide for them to work.
import { posix } from 'node:path';
import type { Quantity } from '../api/nats.ts';
import { compareQuantities, parseQuantity, quantityToBytes } from '../api/quantity.ts';
import { effectiveFileStorageSize, effectiveMemStorageSize } from '../api/storage.ts';
import type { RenderContext, RenderInput } from './context.ts';
import { maxFileStoreBytes } from './guards.ts';
import { objectNames, podDnsName } from './names.ts';

/** Where the ConfigMap is mounted; nats-server runs with `--config <this>/<NATS_CONF_KEY>`. */
export const NATS_CONFIG_MOUNT = '/etc/nats-config';
export const NATS_CONF_KEY = 'nats.conf';
/**
 * Where the Secret is mounted. A sibling of the ConfigMap mount, not nested in it: nats-server
 * resolves `include` relative to the including file's directory only (it joins even absolute
 * paths onto it), so the include in nats.conf is the relative path between the two mounts.
 */
export const RESOLVER_CONF_MOUNT = '/etc/nats-secret';
export const RESOLVER_CONF_KEY = 'resolver.conf';
/** Mount path of the JetStream volume claim. */
export const DATA_DIR = '/data';
/** An emptyDir shared with the config reloader, which signals the pid written here. */
export const PID_DIR = '/var/run/nats';
export const PID_FILE = `${PID_DIR}/nats.pid`;
export const PORTS = {
  client: 4222,
  cluster: 6222,
  monitor: 8222,
  metrics: 7777,
  leafnodes: 7422,
  gateways: 7522,
} as const;

/** Environment of the nats container: the pod name. */
export const SERVER_NAME_ENV = 'SERVER_NAME';
/** Environment of the nats container: `<pod>.<service>.<namespace>.svc.<domain>:6222`. */
export const CLUSTER_ADVERTISE_ENV = 'CLUSTER_ADVERTISE';

export const SYSTEM_ACCOUNT = '$SYS';
export const SYSTEM_ACCOUNT_USER = 'admin';

/** Upstream's values; durations are quoted because an unquoted `2m` lexes as a number. */
const LAME_DUCK_GRACE_PERIOD = '10s';
const LAME_DUCK_DURATION = '120s';
const CONNECT_RETRIES = 120;

// nats-server reads sizes into an int64.
const MAX_INT64 = parseQuantity('9223372036854775807');

const utf8 = new TextEncoder();
const CONSERVATIVE_CHAR = /^[A-Za-z0-9._:/@+=$-]$/;
const CONSERVATIVE_TEXT = /^[A-Za-z0-9._:/@+=$-]*$/;

/**
 * A double-quoted nats.conf string value. Only a conservative set of characters stays as it is;
 * every other UTF-8 byte becomes `\xXX`, so no value can end the string or line, or hit one of
 * the lexer's other escapes. `$` may stay: only unquoted values are variable references.
 */
export function quoteConfString(value: string): string {
  // Most values (hosts, names, sizes) need no escape: one test instead of one per character.
  if (CONSERVATIVE_TEXT.test(value)) return `"${value}"`;
  let quoted = '"';
  for (const char of value) {
    if (CONSERVATIVE_CHAR.test(char)) {
      quoted += char;
    } else {
      for (const byte of utf8.encode(char)) {
        quoted += `\\x${byte.toString(16).padStart(2, '0')}`;
      }
    }
  }
  return `${quoted}"`;
}

/**
 * A quantity as the exact number of bytes, the form nats-server cannot misread.
 * @throws RangeError for a negative size or one beyond int64; QuantityError if not a quantity.
 */
export function byteSize(size: Quantity, field: string): bigint {
  const quantity = parseQuantity(size);
  if (quantity.coefficient < 0n || compareQuantities(quantity, MAX_INT64) > 0) {
    throw new RangeError(`${field}: ${String(size)} is not a size nats-server accepts`);
  }
  return quantityToBytes(quantity);
}

function byteCount(size: Quantity, field: string): string {
  return byteSize(size, field).toString();
}

function clusterBlock(input: RenderInput, context: RenderContext): string[] {
  const names = objectNames(input.name);
  const routes = Array.from({ length: input.spec.cluster.size }, (_, ordinal) => {
    const host = podDnsName(names, input.namespace, ordinal, context.clusterDomain);
    return `    ${quoteConfString(`nats://${host}:${String(PORTS.cluster)}`)}`;
  });
  return [
    '',
    'cluster {',
    `  name: ${quoteConfString(names.base)}`,
    `  port: ${String(PORTS.cluster)}`,
    '  routes: [',
    ...routes,
    '  ]',
    `  cluster_advertise: $${CLUSTER_ADVERTISE_ENV}`,
    `  connect_retries: ${String(CONNECT_RETRIES)}`,
    '}',
  ];
}

/**
 * The nats.conf for one NATS resource; pure and deterministic. Expects the spec validated: sizes
 * must be quantities nats-server can hold.
 * @throws RangeError or QuantityError for a storage size that is not a usable byte count.
 */
export function renderNatsConf(input: RenderInput, context: RenderContext): string {
  const { jetStream, logging, cluster } = input.spec;
  const resolverInclude = posix.relative(
    NATS_CONFIG_MOUNT,
    posix.join(RESOLVER_CONF_MOUNT, RESOLVER_CONF_KEY),
  );
  const lines = [
    '# Rendered by nats-manager from the NATS resource; edits here are overwritten.',
    `port: ${String(PORTS.client)}`,
    `http_port: ${String(PORTS.monitor)}`,
    `pid_file: ${quoteConfString(PID_FILE)}`,
    `server_name: $${SERVER_NAME_ENV}`,
    `lame_duck_grace_period: ${quoteConfString(LAME_DUCK_GRACE_PERIOD)}`,
    `lame_duck_duration: ${quoteConfString(LAME_DUCK_DURATION)}`,
    '',
    'jetstream {',
    // Disabled means 0, not absent: without the line nats-server takes 75% of the host's memory
    // (not the pod's limit) for memory streams, and the pod can be OOM-killed.
    `  max_memory_store: ${
      jetStream.memStorage.enabled
        ? byteCount(
            effectiveMemStorageSize(jetStream.memStorage.size),
            'spec.jetStream.memStorage.size',
          )
        : '0'
    }`,
    `  store_dir: ${quoteConfString(DATA_DIR)}`,
    // Below the claim: the formatted volume is smaller than it (see guards.ts). While the claims
    // grow, below what they hold so far.
    `  max_file_store: ${maxFileStoreBytes(
      byteSize(
        context.fileStoreSize ??
          effectiveFileStorageSize(jetStream.fileStorage.size, context.provider),
        'spec.jetStream.fileStorage.size',
      ),
    ).toString()}`,
    '}',
    // One server has no peers (upstream renders no block either). `> 1`, not `>= 3`: an even
    // size that slipped past validation still forms one cluster, not independent servers.
    ...(cluster.size > 1 ? clusterBlock(input, context) : []),
    ...(logging.debug || logging.trace ? [''] : []),
    ...(logging.debug ? ['debug: true'] : []),
    ...(logging.trace ? ['trace: true'] : []),
    '',
    `include ${quoteConfString(resolverInclude)}`,
  ];
  return `${lines.join('\n')}\n`;
}

/**
 * The resolver.conf of the Secret: the system account `$SYS` with the one user `admin`. As no
 * other account is declared, nats-server still lets clients without credentials into the global
 * account, as upstream's clients expect.
 * @throws RangeError for an empty password, which would let anyone in as admin.
 */
export function renderResolverConf(password: string): string {
  if (password === '') throw new RangeError('the system account password must not be empty');
  const lines = [
    '# Rendered by nats-manager; the password is generated once and kept.',
    'accounts: {',
    // Quoted keys know no escapes; this one is a constant.
    `  "${SYSTEM_ACCOUNT}": {`,
    '    users: [',
    `      { user: ${quoteConfString(SYSTEM_ACCOUNT_USER)}, password: ${quoteConfString(password)} }`,
    '    ]',
    '  }',
    '}',
    `system_account: ${quoteConfString(SYSTEM_ACCOUNT)}`,
    'resolver: MEMORY',
  ];
  return `${lines.join('\n')}\n`;
}
