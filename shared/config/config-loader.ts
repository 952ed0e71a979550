import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';

/**
 * One schema, three sources. A component describes its settings once as a zod object (each
 * field `.describe()`d, with `.default()` where it has one); this module reads them from a YAML
 * config file, from `TGFED_*` environment variables and from command-line flags, in that order
 * of precedence (flags win), validates the merged result with the same schema, and fails with
 * messages that name the setting and where its bad value came from.
 *
 * Names: the field `batchWindowMs` is `batchWindowMs:` in the file, `TGFED_BATCH_WINDOW_MS` in
 * the environment and `--batch-window-ms` on the command line.
 */

/** A setting that failed validation: which, from where, and why. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(readonly problems: readonly string[]) {
    super(`invalid configuration:\n  ${problems.join('\n  ')}`);
  }
}

/** Where each setting's value came from. */
export type ConfigSource = 'default' | 'file' | 'env' | 'flag';

/** Inputs of {@link loadConfig}. */
export interface ConfigInputs {
  /** YAML (or JSON) file with the settings as keys. */
  file?: string | undefined;
  /** @default process.env */
  env?: NodeJS.ProcessEnv;
  /** Parsed flags keyed by field name (commander's camelCase); undefined means not given. */
  flags?: Record<string, unknown>;
  /**
   * Settings of another component that shares the file (the hub's in a worker's config and the
   * other way round): skipped instead of refused as unknown.
   */
  sharedFileKeys?: ReadonlySet<string>;
}

type FieldKind = 'string' | 'number' | 'boolean' | 'array' | 'enum' | 'other';

interface ZodDefLike {
  type: string;
  innerType?: { def: ZodDefLike };
  element?: { def: ZodDefLike };
}

function kindOf(def: ZodDefLike): FieldKind {
  if ((def.type === 'optional' || def.type === 'default') && def.innerType !== undefined) {
    return kindOf(def.innerType.def);
  }
  switch (def.type) {
    case 'string':
    case 'number':
    case 'boolean':
    case 'array':
    case 'enum':
      return def.type;
    default:
      return 'other';
  }
}

/** `batchWindowMs` → `TGFED_BATCH_WINDOW_MS`. */
export function envName(field: string): string {
  return `TGFED_${field.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()}`;
}

/** `batchWindowMs` → `--batch-window-ms`. */
export function flagName(field: string): string {
  return `--${field.replace(/([a-z0-9])([A-Z])/g, '$1-$2').toLowerCase()}`;
}

/** One documented setting of a schema, for `--help`, README tables and flag definitions. */
export interface SettingDoc {
  field: string;
  flag: string;
  env: string;
  kind: FieldKind;
  description: string;
  defaultValue: unknown;
}

/** The settings of a schema with their names in every source. */
export function describeSettings(schema: z.ZodObject): SettingDoc[] {
  return Object.entries(schema.shape).map(([field, type]) => {
    const def = (type as unknown as { def: ZodDefLike & { defaultValue?: unknown } }).def;
    return {
      field,
      flag: flagName(field),
      env: envName(field),
      kind: kindOf(def),
      description: (type as z.ZodType).description ?? '',
      defaultValue: def.type === 'default' ? def.defaultValue : undefined,
    };
  });
}

function fromEnv(kind: FieldKind, text: string): unknown {
  switch (kind) {
    case 'number':
      return text.trim() === '' ? Number.NaN : Number(text);
    case 'boolean':
      if (/^(true|1|yes)$/i.test(text)) return true;
      if (/^(false|0|no)$/i.test(text)) return false;
      return text; // left as text: the schema reports it as not a boolean
    case 'array':
      return text
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== '');
    default:
      return text;
  }
}

/**
 * Reads, merges and validates settings. Throws {@link ConfigError} listing every bad setting
 * with its source (`--flag`, `TGFED_ENV` or `file <path>`), and unknown keys in the file.
 */
export function loadConfig<S extends z.ZodObject>(
  schema: S,
  inputs: ConfigInputs = {},
): z.infer<S> {
  const env = inputs.env ?? process.env;
  const docs = describeSettings(schema);
  const merged: Record<string, unknown> = {};
  const source = new Map<string, string>();
  const problems: string[] = [];

  if (inputs.file !== undefined) {
    let content: unknown;
    try {
      content = parseYaml(readFileSync(inputs.file, 'utf8'));
    } catch (err) {
      throw new ConfigError([`config file ${inputs.file}: ${(err as Error).message}`]);
    }
    if (content !== null && content !== undefined) {
      if (typeof content !== 'object' || Array.isArray(content)) {
        throw new ConfigError([`config file ${inputs.file}: expected a mapping of settings`]);
      }
      for (const [key, value] of Object.entries(content)) {
        if (!Object.hasOwn(schema.shape, key)) {
          if (inputs.sharedFileKeys?.has(key) === true) continue;
          problems.push(`${key} (file ${inputs.file}): unknown setting`);
          continue;
        }
        merged[key] = value;
        source.set(key, `file ${inputs.file}`);
      }
    }
  }
  for (const doc of docs) {
    const text = env[doc.env];
    if (text !== undefined) {
      merged[doc.field] = fromEnv(doc.kind, text);
      source.set(doc.field, doc.env);
    }
  }
  for (const doc of docs) {
    const value = inputs.flags?.[doc.field];
    if (value !== undefined) {
      merged[doc.field] =
        doc.kind === 'number' && typeof value === 'string' ? fromEnv('number', value) : value;
      source.set(doc.field, doc.flag);
    }
  }

  const result = schema.safeParse(merged);
  if (!result.success) {
    for (const issue of result.error.issues) {
      const field = String(issue.path[0] ?? '');
      const doc = docs.find((d) => d.field === field);
      const from = source.get(field) ?? (doc === undefined ? 'config' : `${doc.flag} / ${doc.env}`);
      problems.push(`${field || '(config)'} (${from}): ${issue.message}`);
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return (result as { data: z.infer<S> }).data;
}
