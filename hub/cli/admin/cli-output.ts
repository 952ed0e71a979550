import { stringify as toYaml } from 'yaml';
import type { CliIo } from './cli-io.js';

/** `--output`: a human table, or the proto messages in their JSON mapping as JSON or YAML. */
export type OutputFormat = 'table' | 'json' | 'yaml';

/** The values `--output` accepts. */
export const outputFormats: readonly OutputFormat[] = ['table', 'json', 'yaml'];

/** Writes a proto message's JSON form (`Message.toJSON`) as JSON or YAML. */
export function writeStructured(io: CliIo, format: 'json' | 'yaml', json: unknown): void {
  io.stdout.write(format === 'json' ? `${JSON.stringify(json, null, 2)}\n` : toYaml(json));
}

/**
 * Left-aligned columns separated by three spaces, upper-case headers, `-` for empty cells, as
 * kubectl prints; `indent` prefixes every line.
 */
export function renderTable(
  headers: readonly string[],
  rows: readonly (readonly string[])[],
  indent = '',
): string {
  const cells = [headers.map((h) => h.toUpperCase()), ...rows.map((r) => r.map((c) => c || '-'))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return cells
    .map(
      (row) =>
        indent +
        row
          .map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
          .join('   ')
          .trimEnd() +
        '\n',
    )
    .join('');
}

/** `12s`, `5m`, `3h`, `2d`: how long ago `unixMs` was (`-` for 0, never). */
export function age(unixMs: number, nowMs: number): string {
  if (unixMs === 0) return '-';
  const seconds = Math.max(0, Math.floor((nowMs - unixMs) / 1000));
  if (seconds < 120) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 120) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours}h`;
  return `${Math.floor(hours / 24)}d`;
}

/** An enum's JSON name without its prefix, lower case: `CLUSTER_STATE_STALE` → `stale`. */
export function enumWord(jsonName: string, prefix: string): string {
  const word = jsonName.startsWith(prefix) ? jsonName.slice(prefix.length) : jsonName;
  return word.toLowerCase().replaceAll('_', '-');
}

/** `a=1,b=2`. */
export function labelsText(labels: Readonly<Record<string, string>>): string {
  return Object.entries(labels)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
}
