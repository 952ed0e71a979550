import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, inject, it } from 'vitest';

const run = promisify(execFile);

describe('helm from the test environment', () => {
  it('lints a chart and renders it with values', async () => {
    const { helm } = inject('testenv');
    const chart = mkdtempSync(join(tmpdir(), 'tgfed-chart-'));
    mkdirSync(join(chart, 'templates'));
    writeFileSync(
      join(chart, 'Chart.yaml'),
      'apiVersion: v2\nname: smoke\ndescription: smoke test chart\nversion: 0.1.0\n',
    );
    writeFileSync(join(chart, 'values.yaml'), 'clusterId: default\n');
    writeFileSync(
      join(chart, 'templates', 'configmap.yaml'),
      'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\ndata:\n  clusterId: {{ .Values.clusterId | quote }}\n',
    );

    const lint = await run(helm, ['lint', chart]);
    expect(lint.stdout).toContain('1 chart(s) linted, 0 chart(s) failed');
    const rendered = await run(helm, ['template', 'agent', chart, '--set', 'clusterId=prod-eu-1']);
    expect(rendered.stdout).toContain('name: agent');
    expect(rendered.stdout).toContain('clusterId: "prod-eu-1"');
  });
});

describe('promtool from the test environment', () => {
  const rules = `groups:
  - name: smoke
    rules:
      - alert: ClusterDisconnected
        expr: tgfed_cluster_connected == 0
        for: 1m
        labels: { severity: warning }
`;
  const testFile = (expectedAlert: string) => `rule_files: [rules.yaml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'tgfed_cluster_connected{cluster="a"}'
        values: '1 0 0 0'
    alert_rule_test:
      - eval_time: 3m
        alertname: ${expectedAlert}
        exp_alerts:
          - exp_labels: { severity: warning, cluster: a }
`;

  it('passes a rules unit test whose expectation holds and fails one whose expectation does not', async () => {
    const { promtool } = inject('testenv');
    const dir = mkdtempSync(join(tmpdir(), 'tgfed-rules-'));
    writeFileSync(join(dir, 'rules.yaml'), rules);
    writeFileSync(join(dir, 'good.test.yaml'), testFile('ClusterDisconnected'));
    writeFileSync(join(dir, 'bad.test.yaml'), testFile('SomethingElse'));

    const good = await run(promtool, ['test', 'rules', 'good.test.yaml'], { cwd: dir });
    expect(good.stdout).toContain('SUCCESS');
    await expect(
      run(promtool, ['test', 'rules', 'bad.test.yaml'], { cwd: dir }),
    ).rejects.toMatchObject({ code: 1 });
  });
});
