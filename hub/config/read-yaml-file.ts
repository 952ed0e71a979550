import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { ConfigFileError } from './config-file-error.js';

function pathText(path: readonly PropertyKey[]): string {
  let text = '';
  for (const part of path) {
    text +=
      typeof part === 'number' ? `[${part}]` : text === '' ? String(part) : `.${String(part)}`;
  }
  return text === '' ? '(file)' : text;
}

/** Reads a YAML file and validates it with `schema`; every problem names its field path. */
export function readYamlFile<S extends z.ZodType>(file: string, schema: S): z.infer<S> {
  let content: unknown;
  try {
    content = parseYaml(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new ConfigFileError(file, [(err as Error).message], { cause: err });
  }
  const result = schema.safeParse(content ?? {});
  if (!result.success) {
    throw new ConfigFileError(
      file,
      result.error.issues.map((issue) => `${pathText(issue.path)}: ${issue.message}`),
    );
  }
  return result.data;
}
