// Structured logs through pino: one JSON object per line on stderr, ready for any log pipeline.
// An `error` field is serialized with its stack and its chain of causes. The level is one
// process-wide threshold (`--log-level` / `LOG_LEVEL`, read by the manager's configuration), so
// loggers made at module load follow a level set later.
import { pino, stdSerializers, type Logger as PinoLogger } from 'pino';

export type Fields = Record<string, unknown>;

export interface Logger {
  info(msg: string, fields?: Fields): void;
  error(msg: string, fields?: Fields): void;
  with(fields: Fields): Logger;
}

/** The levels the Go manager's `--log-level` knows, most verbose first. */
export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

const SEVERITY: Record<LogLevel, number> = { debug: 20, info: 30, warn: 40, error: 50 };
let threshold: number = SEVERITY.info;

/** Lines below `level` are dropped from now on, by every logger. */
export function setLogLevel(level: LogLevel): void {
  threshold = SEVERITY[level];
}

export function isLogLevel(value: string): value is LogLevel {
  return (LOG_LEVELS as readonly string[]).includes(value);
}

function createPino(write: ((line: string) => void) | undefined): PinoLogger {
  return pino(
    {
      // The threshold above decides; pino writes what reaches it.
      level: 'debug',
      base: undefined,
      messageKey: 'msg',
      timestamp: () => `,"ts":"${new Date().toISOString()}"`,
      formatters: { level: (label) => ({ level: label }) },
      serializers: { error: stdSerializers.errWithCause },
    },
    // Synchronous on stderr: the last lines before process.exit() are not lost.
    write === undefined ? pino.destination({ fd: 2, sync: true }) : { write },
  );
}

let stderrPino: PinoLogger | undefined;

// The message goes in the merged object, first, so that a line reads level, time, resource,
// message, then its fields (pino appends a separate message argument last).
function wrap(target: PinoLogger): Logger {
  return {
    info: (msg, fields) => {
      if (threshold <= SEVERITY.info) target.info({ msg, ...fields });
    },
    error: (msg, fields) => {
      if (threshold <= SEVERITY.error) target.error({ msg, ...fields });
    },
    with: (fields) => wrap(target.child(fields)),
  };
}

/** A logger whose every line carries `base`; `write` receives each line (tests). */
export function jsonLogger(base: Fields = {}, write?: (line: string) => void): Logger {
  const root = write === undefined ? (stderrPino ??= createPino(undefined)) : createPino(write);
  return wrap(root.child(base));
}
