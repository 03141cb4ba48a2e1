// Structured logs: one JSON object per line on stderr, ready for any log pipeline.
export type Fields = Record<string, unknown>;

export interface Logger {
  info(msg: string, fields?: Fields): void;
  error(msg: string, fields?: Fields): void;
  with(fields: Fields): Logger;
}

export function jsonLogger(
  base: Fields = {},
  write: (line: string) => void = (line) => process.stderr.write(line),
): Logger {
  const emit = (level: string, msg: string, fields: Fields = {}): void => {
    const error = fields.error instanceof Error ? { error: fields.error.message } : {};
    write(
      `${JSON.stringify({ ts: new Date().toISOString(), level, msg, ...base, ...fields, ...error })}\n`,
    );
  };
  return {
    info: (msg, fields) => {
      emit('info', msg, fields);
    },
    error: (msg, fields) => {
      emit('error', msg, fields);
    },
    with: (fields) => jsonLogger({ ...base, ...fields }, write),
  };
}
