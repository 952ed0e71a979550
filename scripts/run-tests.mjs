// Runs vitest and closes with one plain summary line ("N passed, N failed, N skipped").
// Under CI a skipped or todo test fails the run: a skipped test is a failing test.
//
//   node scripts/run-tests.mjs [vitest args...]
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const resultsDir = join(root, '.vitest');
const results = join(resultsDir, 'results.json');
mkdirSync(resultsDir, { recursive: true });

const vitest = spawnSync(
  join(root, 'node_modules/.bin/vitest'),
  [
    'run',
    '--reporter=default',
    '--reporter=json',
    `--outputFile.json=${results}`,
    ...process.argv.slice(2),
  ],
  { cwd: root, stdio: 'inherit' },
);

let summary;
try {
  summary = JSON.parse(readFileSync(results, 'utf8'));
} catch {
  console.error('run-tests: vitest wrote no results');
  process.exit(vitest.status || 1);
}
const passed = summary.numPassedTests;
const failed =
  summary.numFailedTests +
  (summary.numFailedTestSuites > 0 && summary.numFailedTests === 0 ? 1 : 0);
const skipped = summary.numPendingTests + summary.numTodoTests;
console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);

let status = vitest.status ?? 1;
if (passed === 0) {
  console.error('run-tests: no test ran');
  status = 1;
}
if (process.env.CI && skipped > 0) {
  console.error('run-tests: skipped tests fail the run under CI');
  status = 1;
}
process.exit(status);
