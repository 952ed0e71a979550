import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger } from 'pino';

/** Options for {@link createLogger}. */
export interface LoggerOptions {
  /** Component name, e.g. "agent" or "hub". */
  name: string;
  /** @default "info" */
  level?: LevelWithSilent;
  /** Fields on every line, e.g. the cluster id. */
  bindings?: Record<string, string>;
  /** File descriptor to write to (2 keeps stdout for a command's own output). @default 1 */
  destination?: 1 | 2;
}

/**
 * Structured JSON logs on stdout (or stderr) (one object per line, ISO timestamps). Credentials never reach
 * a log line: the usual places they could appear are redacted.
 */
export function createLogger(options: LoggerOptions): Logger {
  return pino(
    {
      name: options.name,
      level: options.level ?? 'info',
      base: { ...options.bindings },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: {
        paths: [
          'token',
          '*.token',
          'authorization',
          '*.authorization',
          'password',
          '*.password',
          'secretAccessKey',
        ],
        censor: '[redacted]',
      },
    },
    pino.destination({ fd: options.destination ?? 1, sync: true }),
  );
}

/** A logger that drops everything (the default inside libraries and tests). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
