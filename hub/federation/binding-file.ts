import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { Binding } from '../../shared/index.js';
import { formatFieldPath, validateBinding, type NormalizedBinding } from './binding-validation.js';

/**
 * The declarative bindings file read at start: a YAML list of bindings, or a mapping with a
 * `bindings:` list. Keys are the proto JSON names (camelCase), as `tgfed` prints bindings, e.g.
 *
 * ```yaml
 * bindings:
 *   - name: web
 *     services: { namespace: shop, name: web }
 *     port: { name: http }
 *     clusters: { labels: { matchLabels: { env: prod } } }
 *     targetGroup:
 *       arn: arn:aws:elasticloadbalancing:eu-west-1:111111111111:targetgroup/web/0123456789abcdef
 *       roleArn: arn:aws:iam::111111111111:role/tgfed
 * ```
 *
 * Label selector operators may be written the Kubernetes way (`In`, `NotIn`, `Exists`,
 * `DoesNotExist`) or as the proto enum names.
 */

/** One problem of a binding file: which entry, which field, why. */
export interface BindingFileViolation {
  file: string;
  /** Position of the binding in the file's list; -1 for the file as a whole. */
  index: number;
  field: string;
  description: string;
}

/** A binding file that cannot be used; lists every violation as `file:index:field: why`. */
export class BindingFileError extends Error {
  override readonly name = 'BindingFileError';
  constructor(
    readonly violations: readonly BindingFileViolation[],
    options?: { cause?: unknown },
  ) {
    super(
      `invalid bindings file:\n  ${violations
        .map((v) => `${v.file}:${v.index}:${v.field}: ${v.description}`)
        .join('\n  ')}`,
      options,
    );
  }
}

const KUBERNETES_OPERATORS = {
  In: 'LABEL_SELECTOR_OPERATOR_IN',
  NotIn: 'LABEL_SELECTOR_OPERATOR_NOT_IN',
  Exists: 'LABEL_SELECTOR_OPERATOR_EXISTS',
  DoesNotExist: 'LABEL_SELECTOR_OPERATOR_DOES_NOT_EXIST',
} as const;

const operatorSchema = z
  .enum([
    ...(Object.keys(KUBERNETES_OPERATORS) as (keyof typeof KUBERNETES_OPERATORS)[]),
    ...Object.values(KUBERNETES_OPERATORS),
  ])
  .transform((op) =>
    op in KUBERNETES_OPERATORS ? KUBERNETES_OPERATORS[op as keyof typeof KUBERNETES_OPERATORS] : op,
  );

const labelSelectorSchema = z.strictObject({
  matchLabels: z.record(z.string(), z.string()).optional(),
  matchExpressions: z
    .array(
      z.strictObject({
        key: z.string(),
        operator: operatorSchema,
        values: z.array(z.string()).optional(),
      }),
    )
    .optional(),
});

const targetGroupSchema = z.strictObject({
  arn: z.string(),
  accountId: z.string().optional(),
  region: z.string().optional(),
  roleArn: z.string().optional(),
  externalId: z.string().optional(),
  targetType: z.string().optional(),
  capacity: z.number().int().nonnegative().optional(),
  availabilityZone: z.string().optional(),
});

// The shape of one entry. Strict objects, because a misspelt key (`roleARN:`) silently ignored
// would feed a target group with the wrong credentials; the rules themselves are validateBinding's.
const bindingEntrySchema = z
  .strictObject({
    name: z.string(),
    services: z
      .strictObject({
        namespace: z.string().optional(),
        name: z.string().optional(),
        labels: labelSelectorSchema.optional(),
      })
      .optional(),
    port: z
      .strictObject({
        name: z.string().optional(),
        number: z.number().int().optional(),
      })
      .refine((p) => (p.name === undefined) !== (p.number === undefined), {
        message: 'set exactly one of name or number',
      })
      .optional(),
    clusters: z
      .strictObject({
        names: z.array(z.string()).optional(),
        labels: labelSelectorSchema.optional(),
      })
      .optional(),
    policy: z
      .strictObject({
        includeNotReady: z.boolean().optional(),
        keepTerminating: z.boolean().optional(),
      })
      .optional(),
    targetGroup: targetGroupSchema.optional(),
    pool: z
      .strictObject({
        groups: z.array(targetGroupSchema),
        listenerRuleArn: z.string().optional(),
      })
      .optional(),
  })
  .refine((b) => !(b.targetGroup !== undefined && b.pool !== undefined), {
    message: 'set exactly one of targetGroup or pool, not both',
    path: ['pool'],
  });

function violationsOfIssues(
  file: string,
  index: number,
  issues: z.core.$ZodIssue[],
): BindingFileViolation[] {
  return issues.flatMap((issue) =>
    issue.code === 'unrecognized_keys'
      ? issue.keys.map((key) => ({
          file,
          index,
          field: formatFieldPath([...issue.path, key]),
          description: 'unknown field',
        }))
      : [{ file, index, field: formatFieldPath(issue.path), description: issue.message }],
  );
}

/** Validates already-parsed file content (a list, or `{ bindings: [...] }`). */
export function bindingsFromDocument(content: unknown, file: string): NormalizedBinding[] {
  if (content === null || content === undefined) return [];
  let entries: unknown;
  if (Array.isArray(content)) entries = content;
  else if (typeof content === 'object' && Object.keys(content).every((k) => k === 'bindings')) {
    entries = (content as { bindings?: unknown }).bindings ?? [];
  }
  if (!Array.isArray(entries)) {
    throw new BindingFileError([
      {
        file,
        index: -1,
        field: 'bindings',
        description: 'expected a list of bindings or a mapping with only a bindings: list',
      },
    ]);
  }
  const violations: BindingFileViolation[] = [];
  const bindings: NormalizedBinding[] = [];
  const firstIndexByName = new Map<string, number>();
  entries.forEach((entry: unknown, index) => {
    const shape = bindingEntrySchema.safeParse(entry);
    if (!shape.success) {
      violations.push(...violationsOfIssues(file, index, shape.error.issues));
      return;
    }
    const result = validateBinding(Binding.fromJSON(shape.data));
    if (!result.ok) {
      violations.push(...result.violations.map((v) => ({ file, index, ...v })));
      return;
    }
    const first = firstIndexByName.get(result.binding.name);
    if (first !== undefined) {
      violations.push({
        file,
        index,
        field: 'name',
        description: `duplicate of the binding at index ${first}`,
      });
      return;
    }
    firstIndexByName.set(result.binding.name, index);
    bindings.push(result.binding);
  });
  if (violations.length > 0) throw new BindingFileError(violations);
  return bindings;
}

/** Parses and validates the text of a bindings file; `file` names it in violations. */
export function parseBindingFile(text: string, file: string): NormalizedBinding[] {
  let content: unknown;
  try {
    content = parseYaml(text);
  } catch (err) {
    throw new BindingFileError(
      [{ file, index: -1, field: '', description: `not valid YAML: ${(err as Error).message}` }],
      { cause: err },
    );
  }
  return bindingsFromDocument(content, file);
}

/** Reads, parses and validates a bindings file. Throws {@link BindingFileError}. */
export function loadBindingFile(path: string): NormalizedBinding[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new BindingFileError(
      [{ file: path, index: -1, field: '', description: `cannot read: ${(err as Error).message}` }],
      { cause: err },
    );
  }
  return parseBindingFile(text, path);
}
