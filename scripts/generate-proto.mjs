// Generates the TypeScript for the wire contract (proto/ -> shared/generated/) with buf and
// ts-proto, both from the npm registry, so generation is reproducible from the lockfile, and the
// API reference proto/API.md (scripts/generate-api-doc.mjs).
//
//   node scripts/generate-proto.mjs          regenerate shared/generated and proto/API.md
//   node scripts/generate-proto.mjs --check  buf lint, and fail when either is stale
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { generateApiDoc } from './generate-api-doc.mjs';

const root = new URL('..', import.meta.url).pathname;
const target = 'shared/generated';
const buf = join(root, 'node_modules/.bin/buf');
const check = process.argv.includes('--check');

function run(args, cwd = root) {
  execFileSync(buf, args, { cwd, stdio: 'inherit' });
}

function listFiles(dir) {
  const out = new Map();
  const walk = (d) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else out.set(relative(dir, p), readFileSync(p, 'utf8'));
    }
  };
  try {
    walk(dir);
  } catch (err) {
    if (err.code !== 'ENOENT') throw err;
  }
  return out;
}

if (!check) {
  rmSync(join(root, target), { recursive: true, force: true });
  run(['generate', '--template', 'buf.gen.yaml']);
  console.log(`generated ${listFiles(join(root, target)).size} files in ${target}`);
  await generateApiDoc();
} else {
  run(['lint']);
  const scratch = mkdtempSync(join(tmpdir(), 'tgfed-proto-'));
  try {
    run(['generate', '--template', 'buf.gen.yaml', '--output', scratch]);
    const fresh = listFiles(join(scratch, target));
    const committed = listFiles(join(root, target));
    const stale = [...new Set([...fresh.keys(), ...committed.keys()])].filter(
      (f) => fresh.get(f) !== committed.get(f),
    );
    if (stale.length > 0) {
      console.error(`${target} is stale (${stale.join(', ')}); run: npm run generate`);
      process.exitCode = 1;
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  if (!(await generateApiDoc({ check: true }))) process.exitCode = 1;
}
