// Bundles each process entry into one minified ESM file under dist/bundle/ (`npm run build`).
//
// Why: @kubernetes/client-node's KubeConfig imports its whole generated API (hundreds of modules);
// loaded from node_modules that costs the agent ~45 MB of RSS before it holds a single endpoint.
// Bundled and tree-shaken, the same code starts at ~100 MB instead of ~148 MB, which is what
// keeps a 10,000-endpoint agent within DESIGN.md's 150 MB (`npm run bench:agent`). The hub and
// the workers are bundled for the same reason (the fleet benchmark runs these bundles).
import { build } from 'esbuild';

const entries = {
  'tgfed-agent': 'agent/main.ts',
  'tgfed-hub': 'hub/main.ts',
  'tgfed-worker': 'hub/worker-main.ts',
};

await build({
  entryPoints: entries,
  outdir: 'dist/bundle',
  outExtension: { '.js': '.mjs' },
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node22',
  minify: true,
  sourcemap: 'linked',
  logLevel: 'warning',
  // These read their .proto files from their own package folder at run time (__dirname), so
  // they stay in node_modules.
  external: ['grpc-health-check', '@grpc/reflection', '@grpc/proto-loader'],
  // Some dependencies are CommonJS and call require(); give the ESM bundle one.
  banner: {
    js: "import { createRequire as __tgfedCreateRequire } from 'node:module'; const require = __tgfedCreateRequire(import.meta.url);",
  },
});
console.log(`bundled ${Object.keys(entries).join(', ')} into dist/bundle/`);
