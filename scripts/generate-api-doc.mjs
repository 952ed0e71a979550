// Generates proto/API.md, the reference of the gRPC API (AdminService for operators and tools,
// AgentService for agent implementers), from the proto files and their comments. buf compiles
// the protos into a descriptor set with source info; @bufbuild/protobuf reads it. Nothing here
// parses .proto text.
//
// An AdminService method's comment must end with a line `Role: read-only.` or `Role: admin.`;
// generation fails otherwise, so the reference always states the role each method needs.
// gRPC status codes named in a method's comment are listed with the method.
//
//   node scripts/generate-api-doc.mjs          rewrite proto/API.md
//   node scripts/generate-api-doc.mjs --check  fail when proto/API.md is stale
//   node scripts/generate-api-doc.mjs --stdout [--proto <dir>]
//                                              print the reference (of other protos: for tests)
//
// `npm run generate` and `npm run check:proto` (scripts/generate-proto.mjs) run this too.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ScalarType, createFileRegistry, fromBinary } from '@bufbuild/protobuf';
import { FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';
import * as prettier from 'prettier';

const root = fileURLToPath(new URL('..', import.meta.url));

/** Where the reference is written, relative to the repository root. */
export const apiDocFile = 'proto/API.md';

const pkg = 'tgfed.v1';
const services = [
  {
    name: `${pkg}.AdminService`,
    audience: 'operators and tools (the `tgfed` CLI is one)',
    requireRole: true,
  },
  {
    name: `${pkg}.AgentService`,
    audience: 'agent implementers (the tgfed agent is one)',
    requireRole: false,
  },
];
const roles = ['read-only', 'admin'];
const roleLine = /^Role: ([a-z-]+)\.$/;
// The canonical gRPC status codes (OK left out: it is no failure, and a common word).
const statusCodes = [
  'CANCELLED',
  'UNKNOWN',
  'INVALID_ARGUMENT',
  'DEADLINE_EXCEEDED',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED',
  'FAILED_PRECONDITION',
  'ABORTED',
  'OUT_OF_RANGE',
  'UNIMPLEMENTED',
  'INTERNAL',
  'UNAVAILABLE',
  'DATA_LOSS',
  'UNAUTHENTICATED',
];

// Field numbers in google/protobuf/descriptor.proto that make up SourceCodeInfo paths.
const path = {
  fileMessage: 4,
  fileEnum: 5,
  fileService: 6,
  messageField: 2,
  messageNested: 3,
  messageEnum: 4,
  enumValue: 2,
  serviceMethod: 2,
};

/** The descriptor set of a proto directory with source info (comments), as buf builds it. */
function buildDescriptorSet(protoDir) {
  const scratch = mkdtempSync(join(tmpdir(), 'tgfed-api-doc-'));
  try {
    const out = join(scratch, 'tgfed.binpb');
    execFileSync(
      join(root, 'node_modules/.bin/buf'),
      ['build', protoDir, '--as-file-descriptor-set', '-o', out],
      { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] },
    );
    return fromBinary(FileDescriptorSetSchema, readFileSync(out));
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

/** The SourceCodeInfo path of a descriptor (message, enum, enum value, field, service, method). */
function sourcePath(desc) {
  switch (desc.kind) {
    case 'message':
      return desc.parent === undefined
        ? [path.fileMessage, desc.file.proto.messageType.indexOf(desc.proto)]
        : [
            ...sourcePath(desc.parent),
            path.messageNested,
            desc.parent.proto.nestedType.indexOf(desc.proto),
          ];
    case 'enum':
      return desc.parent === undefined
        ? [path.fileEnum, desc.file.proto.enumType.indexOf(desc.proto)]
        : [
            ...sourcePath(desc.parent),
            path.messageEnum,
            desc.parent.proto.enumType.indexOf(desc.proto),
          ];
    case 'enum_value':
      return [
        ...sourcePath(desc.parent),
        path.enumValue,
        desc.parent.proto.value.indexOf(desc.proto),
      ];
    case 'field':
      return [
        ...sourcePath(desc.parent),
        path.messageField,
        desc.parent.proto.field.indexOf(desc.proto),
      ];
    case 'service':
      return [path.fileService, desc.file.proto.service.indexOf(desc.proto)];
    case 'rpc':
      return [
        ...sourcePath(desc.parent),
        path.serviceMethod,
        desc.parent.proto.method.indexOf(desc.proto),
      ];
    default:
      throw new Error(`no source path for a ${desc.kind}`);
  }
}

/** The file a descriptor is declared in (methods, fields and values know only their parent). */
function fileOf(desc) {
  return desc.file ?? fileOf(desc.parent);
}

/** The source location of a descriptor: its comments and span. */
function locationOf(desc) {
  const key = sourcePath(desc).join(',');
  return fileOf(desc).proto.sourceCodeInfo?.location.find((l) => l.path.join(',') === key);
}

/** The leading comment of a descriptor as lines, without the one space after `//`. */
function commentLines(desc) {
  const text = locationOf(desc)?.leadingComments ?? '';
  const lines = text.replace(/\n$/, '').split('\n');
  const stripped = lines.map((l) => (l.startsWith(' ') ? l.slice(1) : l).trimEnd());
  return stripped.every((l) => l === '') ? [] : stripped;
}

/** Where a descriptor is declared, for error messages. */
function sourceOf(desc) {
  return `${fileOf(desc).proto.name}:${(locationOf(desc)?.span[0] ?? 0) + 1}`;
}

/**
 * Comment lines as Markdown blocks: paragraphs, and fenced code for indented runs (a comment's
 * diagram keeps its layout).
 */
function commentBlocks(lines) {
  const blocks = [];
  let current;
  for (const line of lines) {
    const kind = line === '' ? undefined : line.startsWith(' ') ? 'code' : 'text';
    if (kind === undefined) {
      current = undefined;
    } else if (current?.kind === kind) {
      current.lines.push(line);
    } else {
      current = { kind, lines: [line] };
      blocks.push(current);
    }
  }
  return blocks.map((b) => {
    if (b.kind === 'text') return b.lines.join('\n');
    const indent = Math.min(...b.lines.map((l) => /^ */.exec(l)[0].length));
    return ['```text', ...b.lines.map((l) => l.slice(indent)), '```'].join('\n');
  });
}

/** Comment lines as one table cell. */
function commentCell(lines) {
  return lines
    .filter((l) => l !== '')
    .map((l) => l.trim())
    .join(' ')
    .replaceAll('|', '\\|');
}

function localName(typeName) {
  return typeName.startsWith(`${pkg}.`) ? typeName.slice(pkg.length + 1) : typeName;
}

/** GitHub's heading anchor for a heading text. */
function slug(text) {
  return text
    .toLowerCase()
    .replace(/[^a-z0-9 _-]/g, '')
    .replaceAll(' ', '-');
}

function typeLink(desc) {
  const name = localName(desc.typeName);
  return `[${name}](#${slug(name)})`;
}

function scalarName(scalar) {
  return ScalarType[scalar].toLowerCase();
}

/** The type column of a field: scalar names as in .proto, messages and enums linked. */
function fieldType(field) {
  const single = (kind, scalar, message, enumeration) =>
    kind === 'scalar'
      ? `\`${scalarName(scalar)}\``
      : typeLink(kind === 'message' ? message : enumeration);
  switch (field.fieldKind) {
    case 'scalar':
      return `${field.proto.proto3Optional ? 'optional ' : ''}${single('scalar', field.scalar)}`;
    case 'enum':
    case 'message':
      return `${field.proto.proto3Optional ? 'optional ' : ''}${single(field.fieldKind, undefined, field.message, field.enum)}`;
    case 'list':
      return `repeated ${single(field.listKind, field.scalar, field.message, field.enum)}`;
    case 'map':
      if (field.mapKind === 'scalar') {
        return `\`map<${scalarName(field.mapKey)}, ${scalarName(field.scalar)}>\``;
      }
      return `map&lt;\`${scalarName(field.mapKey)}\`, ${single(field.mapKind, field.scalar, field.message, field.enum)}&gt;`;
    default:
      throw new Error(`unknown field kind ${field.fieldKind}`);
  }
}

/** The messages and enums a service's methods use, directly or through fields. */
function reachableTypes(service) {
  const seen = new Set();
  const visit = (desc) => {
    if (seen.has(desc)) return;
    seen.add(desc);
    if (desc.kind !== 'message') return;
    for (const field of desc.fields) {
      if (field.message !== undefined) visit(field.message);
      if (field.enum !== undefined) visit(field.enum);
    }
  };
  for (const method of service.methods) {
    visit(method.input);
    visit(method.output);
  }
  return seen;
}

/**
 * Declaration order: by file (the `first` file, then as buf orders the set: imports before
 * importers), then by place in the file.
 */
function declarationOrder(files, first) {
  const order = new Map();
  const add = (desc) => {
    order.set(desc, order.size);
    if (desc.kind === 'message') {
      for (const nested of desc.nestedMessages) add(nested);
      for (const nested of desc.nestedEnums) add(nested);
    }
  };
  for (const file of [first, ...files.filter((f) => f !== first)]) {
    for (const message of file.messages) add(message);
    for (const enumeration of file.enums) add(enumeration);
  }
  return (a, b) => order.get(a) - order.get(b);
}

function methodSignature(method) {
  const stream = (streaming) => (streaming ? 'stream ' : '');
  const clientStreams =
    method.methodKind === 'client_streaming' || method.methodKind === 'bidi_streaming';
  const serverStreams =
    method.methodKind === 'server_streaming' || method.methodKind === 'bidi_streaming';
  return (
    `\`rpc ${method.name}(${stream(clientStreams)}${localName(method.input.typeName)}) ` +
    `returns (${stream(serverStreams)}${localName(method.output.typeName)})\``
  );
}

/** The gRPC status codes a comment names, in the order it names them. */
function statusCodesIn(lines) {
  const text = lines.join('\n');
  const at = (code) => text.search(new RegExp(`\\b${code}\\b`));
  return statusCodes
    .filter((code) => at(code) >= 0)
    .sort((a, b) => at(a) - at(b))
    .map((code) => `\`${code}\``)
    .join(', ');
}

/** A method's comment split into its role line and the rest; checks the role when required. */
function methodDoc(method, requireRole) {
  const lines = commentLines(method);
  const roleLines = lines.filter((l) => roleLine.test(l));
  const rest = lines.filter((l) => !roleLine.test(l));
  const role = roleLines.length === 1 ? roleLine.exec(roleLines[0])[1] : undefined;
  if (requireRole && (role === undefined || !roles.includes(role))) {
    throw new Error(
      `${sourceOf(method)}: the comment of ${method.parent.name}.${method.name} needs one line ` +
        `"Role: read-only." or "Role: admin."`,
    );
  }
  return { role, rest, codes: statusCodesIn(rest) };
}

function renderMessage(message) {
  const out = [`#### ${localName(message.typeName)}`, ...commentBlocks(commentLines(message))];
  if (message.fields.length === 0) {
    out.push('No fields.');
    return out;
  }
  const rows = message.fields.map((field) => {
    const oneof =
      field.oneof !== undefined && !field.proto.proto3Optional
        ? `One of \`${field.oneof.name}\`. `
        : '';
    return [
      `\`${field.name}\``,
      String(field.number),
      fieldType(field),
      `\`${field.jsonName}\``,
      `${oneof}${commentCell(commentLines(field))}`.trim(),
    ];
  });
  out.push(table(['Field', 'Number', 'Type', 'JSON name', 'Description'], rows));
  return out;
}

function renderEnum(enumeration) {
  const out = [
    `#### ${localName(enumeration.typeName)}`,
    ...commentBlocks(commentLines(enumeration)),
  ];
  const rows = enumeration.values.map((value) => [
    `\`${value.name}\``,
    String(value.number),
    commentCell(commentLines(value)),
  ]);
  out.push(table(['Value', 'Number', 'Description'], rows));
  return out;
}

function table(header, rows) {
  const line = (cells) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

function renderTypes(title, types) {
  const messages = types.filter((t) => t.kind === 'message');
  const enums = types.filter((t) => t.kind === 'enum');
  const out = [];
  if (messages.length > 0) out.push(`### ${title} messages`, ...messages.flatMap(renderMessage));
  if (enums.length > 0) out.push(`### ${title} enums`, ...enums.flatMap(renderEnum));
  return out;
}

function renderService(service, spec, ownTypes) {
  const shortName = service.name;
  const docs = new Map(service.methods.map((m) => [m, methodDoc(m, spec.requireRole)]));
  const comment = commentLines(service);
  const out = [`## ${shortName}`, `For ${spec.audience}.`, ...commentBlocks(comment)];
  const codes = statusCodesIn(comment);
  if (codes !== '') out.push(`Status codes any method may return: ${codes}.`);
  const header = ['Method', 'Request', 'Response', ...(spec.requireRole ? ['Role'] : [])];
  out.push(
    table(
      header,
      service.methods.map((m) => [
        `[${m.name}](#${slug(m.name)})`,
        typeLink(m.input),
        typeLink(m.output),
        ...(spec.requireRole ? [docs.get(m).role] : []),
      ]),
    ),
  );
  for (const method of service.methods) {
    const { role, rest, codes } = docs.get(method);
    out.push(`### ${method.name}`, methodSignature(method));
    const facts = [
      `- Request: ${typeLink(method.input)}`,
      `- Response: ${typeLink(method.output)}`,
      ...(role === undefined ? [] : [`- Role: ${role}`]),
      ...(codes === '' ? [] : [`- Status codes: ${codes}`]),
    ];
    out.push(facts.join('\n'), ...commentBlocks(rest));
  }
  out.push(...renderTypes(shortName.replace(/Service$/, ''), ownTypes));
  return out;
}

/** proto/API.md as the proto files in the working tree generate it (Prettier-formatted). */
export async function renderApiDoc({ protoDir = join(root, 'proto') } = {}) {
  const registry = createFileRegistry(buildDescriptorSet(protoDir));
  const files = [...registry.files];
  const resolved = services.map((spec) => {
    const service = registry.getService(spec.name);
    if (service === undefined) throw new Error(`${spec.name} is not in proto/`);
    return { spec, service, types: reachableTypes(service) };
  });
  const usedBy = (desc) => resolved.filter((r) => r.types.has(desc)).length;
  const shared = [...new Set(resolved.flatMap((r) => [...r.types]))]
    .filter((t) => usedBy(t) > 1)
    .sort(declarationOrder(files, files[0]));

  const out = [
    '# tgfed gRPC API',
    '<!-- Generated from proto/tgfed/v1/*.proto by scripts/generate-api-doc.mjs (npm run generate). Edit the proto comments, not this file. -->',
    `Package \`${pkg}\`, generated from the comments in [\`proto/tgfed/v1\`](tgfed/v1). ` +
      'Field names are as in the .proto files; the JSON name is the proto3 JSON mapping, which ' +
      "the `tgfed` CLI's `--output json|yaml` and the hub's binding files use.",
    resolved
      .map(({ service }) => `- [${service.name}](#${slug(service.name)})`)
      .concat(
        shared.length > 0 ? ['- [Types used by both services](#types-used-by-both-services)'] : [],
      )
      .join('\n'),
  ];
  for (const { spec, service, types } of resolved) {
    const own = [...types]
      .filter((t) => usedBy(t) === 1)
      .sort(declarationOrder(files, service.file));
    out.push(...renderService(service, spec, own));
  }
  if (shared.length > 0) {
    out.push('## Types used by both services', ...renderTypes('Shared', shared));
  }

  const headings = out.filter((b) => /^#+ /.test(b)).map((h) => slug(h.replace(/^#+ /, '')));
  const duplicate = headings.find((h, i) => headings.indexOf(h) !== i);
  if (duplicate !== undefined) throw new Error(`two headings share the anchor #${duplicate}`);

  const target = join(root, apiDocFile);
  const options = (await prettier.resolveConfig(target)) ?? {};
  return prettier.format(`${out.join('\n\n')}\n`, { ...options, parser: 'markdown' });
}

/** Writes proto/API.md, or with `check` returns false when it differs from what it should be. */
export async function generateApiDoc({ check = false } = {}) {
  const fresh = await renderApiDoc();
  const target = join(root, apiDocFile);
  if (!check) {
    writeFileSync(target, fresh);
    console.log(`generated ${apiDocFile}`);
    return true;
  }
  let current;
  try {
    current = readFileSync(target, 'utf8');
  } catch (err) {
    if (err.code !== 'ENOENT') throw err;
  }
  if (current !== fresh) {
    console.error(`${apiDocFile} is stale; run: npm run generate`);
    return false;
  }
  return true;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({
    options: { check: { type: 'boolean' }, stdout: { type: 'boolean' }, proto: { type: 'string' } },
  });
  if (values.stdout) {
    process.stdout.write(await renderApiDoc({ protoDir: values.proto }));
  } else if (values.proto !== undefined) {
    throw new Error('--proto only goes with --stdout: proto/API.md documents proto/');
  } else if (!(await generateApiDoc({ check: values.check }))) {
    process.exitCode = 1;
  }
}
