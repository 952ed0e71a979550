import { homedir } from 'node:os';
import { text } from 'node:stream/consumers';

/** Where a command writes and what it reads from its process: injected so tests run in-process. */
export interface CliIo {
  readonly stdout: { write(chunk: string): unknown };
  readonly stderr: { write(chunk: string): unknown };
  /** All of standard input (for `-f -`). */
  readStdin(): Promise<string>;
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly homeDir: string;
  /** Milliseconds since the epoch, for ages ("12s ago"). */
  now(): number;
}

/** The real process's streams, environment and clock. */
export function processIo(): CliIo {
  return {
    stdout: process.stdout,
    stderr: process.stderr,
    readStdin: () => text(process.stdin),
    env: process.env,
    homeDir: homedir(),
    now: () => Date.now(),
  };
}
