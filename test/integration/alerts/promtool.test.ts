import { execFile } from 'node:child_process';
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { parse, stringify } from 'yaml';

// The alerting rules in deploy/alerts against the real promtool of the test environment: the
// rules check, every unit test passes, every rule is tested both firing and not firing, each
// rule's tests fail without the rule, and the PrometheusRule manifest carries the same groups.

const run = promisify(execFile);
const alertsDir = resolve(import.meta.dirname, '../../../deploy/alerts');
const rulesFile = join(alertsDir, 'tgfed-rules.yaml');
const testsDir = join(alertsDir, 'tests');
const testFiles = readdirSync(testsDir)
  .filter((f) => f.endsWith('.test.yaml'))
  .sort();

interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface RuleGroup {
  name: string;
  rules: Rule[];
}
interface RuleTestFile {
  rule_files: string[];
  tests: { alert_rule_test?: { alertname: string; exp_alerts?: unknown[] }[] }[];
}

const groups = (parse(readFileSync(rulesFile, 'utf8')) as { groups: RuleGroup[] }).groups;
const alertNames = groups.flatMap((g) => g.rules.flatMap((r) => (r.alert ? [r.alert] : [])));
const scratch: string[] = [];

afterAll(() => {
  for (const dir of scratch) rmSync(dir, { recursive: true, force: true });
});

/** Runs promtool; resolves with its output and exit code instead of rejecting. */
async function promtool(
  args: string[],
  cwd: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const { promtool } = inject('testenv');
  try {
    const { stdout, stderr } = await run(promtool, args, { cwd });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

describe('tgfed alerting rules', () => {
  it('pass promtool check rules', async () => {
    const result = await promtool(['check', 'rules', rulesFile], alertsDir);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`SUCCESS: ${alertNames.length} rules found`);
  });

  it('pass every promtool unit test', async () => {
    expect(testFiles.length).toBeGreaterThan(0);
    const result = await promtool(['test', 'rules', ...testFiles], testsDir);
    expect(result.stdout + result.stderr).not.toContain('FAILED');
    expect(result.code).toBe(0);
    expect(result.stdout.match(/SUCCESS/g)).toHaveLength(testFiles.length);
  });

  it('are named Tgfed..., carry a severity, a summary, a description and a runbook link', () => {
    expect(alertNames.length).toBeGreaterThanOrEqual(15);
    expect(new Set(alertNames).size).toBe(alertNames.length);
    for (const rule of groups.flatMap((g) => g.rules)) {
      expect(rule.alert, rule.expr).toMatch(/^Tgfed[A-Z]\w+$/);
      expect(['warning', 'critical']).toContain(rule.labels?.severity);
      expect(rule.annotations?.summary, rule.alert).toBeTruthy();
      expect(rule.annotations?.description, rule.alert).toMatch(/\$labels|\$value|\w/);
      expect(rule.annotations?.runbook_url).toBe(
        `https://github.com/tgfed/tgfed/blob/main/README.md#${rule.alert?.toLowerCase()}`,
      );
    }
  });

  it('each have a firing and a not-firing test case', () => {
    const firing = new Set<string>();
    const quiet = new Set<string>();
    for (const file of testFiles) {
      const spec = parse(readFileSync(join(testsDir, file), 'utf8')) as RuleTestFile;
      expect(spec.rule_files, file).toEqual(['../tgfed-rules.yaml']);
      for (const test of spec.tests) {
        for (const c of test.alert_rule_test ?? []) {
          expect(alertNames, `${file} tests an unknown alert`).toContain(c.alertname);
          ((c.exp_alerts ?? []).length > 0 ? firing : quiet).add(c.alertname);
        }
      }
    }
    expect(alertNames.filter((a) => !firing.has(a))).toEqual([]);
    expect(alertNames.filter((a) => !quiet.has(a))).toEqual([]);
  });

  it('each fail their unit tests when the rule is missing', async () => {
    const failing: string[] = [];
    for (const alert of alertNames) {
      const dir = mkdtempSync(join(tmpdir(), 'tgfed-rules-'));
      scratch.push(dir);
      const without = groups.map((g) => ({
        ...g,
        rules: g.rules.filter((r) => r.alert !== alert),
      }));
      writeFileSync(join(dir, 'tgfed-rules.yaml'), stringify({ groups: without }));
      mkdirSync(join(dir, 'tests'));
      // Only the files that test this alert (the others pass either way).
      const files = testFiles.filter((f) =>
        readFileSync(join(testsDir, f), 'utf8').includes(`alertname: ${alert}\n`),
      );
      for (const file of files) copyFileSync(join(testsDir, file), join(dir, 'tests', file));
      const result = await promtool(['test', 'rules', ...files], join(dir, 'tests'));
      if (result.code !== 0 && result.stderr.includes(`alertname: ${alert},`)) failing.push(alert);
    }
    expect(failing).toEqual(alertNames);
  });

  it('are the same groups in the PrometheusRule manifest', async () => {
    const manifest = parse(readFileSync(join(alertsDir, 'tgfed-prometheusrule.yaml'), 'utf8')) as {
      apiVersion: string;
      kind: string;
      metadata: { name: string };
      spec: { groups: RuleGroup[] };
    };
    expect(manifest).toMatchObject({
      apiVersion: 'monitoring.coreos.com/v1',
      kind: 'PrometheusRule',
      metadata: { name: 'tgfed' },
    });
    expect(manifest.spec.groups).toEqual(groups);
    // And the manifest is exactly what the render script writes (nobody edited it by hand).
    const check = await run(process.execPath, [
      join(alertsDir, 'render-prometheusrule.mjs'),
      '--check',
    ]);
    expect(check.stderr).toBe('');
  });
});
