import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, inject, it } from 'vitest';
import { stringify } from 'yaml';

const run = promisify(execFile);

interface Panel {
  title: string;
  targets?: { expr?: string }[];
  panels?: Panel[];
}

/** The dashboard's queries with Grafana's variables replaced by what Prometheus would get. */
function dashboardQueries(): { title: string; expr: string }[] {
  const path = resolve(import.meta.dirname, '../../../deploy/grafana/tgfed-dashboard.json');
  const dashboard = JSON.parse(readFileSync(path, 'utf8')) as { panels: Panel[] };
  return dashboard.panels
    .flatMap((p) => [p, ...(p.panels ?? [])])
    .flatMap((p) => (p.targets ?? []).map((t) => ({ title: p.title, expr: t.expr ?? '' })))
    .map((q) => ({
      ...q,
      expr: q.expr
        .replaceAll('$__rate_interval', '2m')
        .replaceAll('$cluster', '.*')
        .replaceAll('$account', '.*'),
    }));
}

describe('the Grafana dashboard queries', () => {
  it('are valid PromQL (promtool checks them as recording rules)', async () => {
    const { promtool } = inject('testenv');
    const queries = dashboardQueries();
    expect(queries.length).toBeGreaterThan(20);
    const dir = mkdtempSync(join(tmpdir(), 'tgfed-dashboard-'));
    try {
      const file = join(dir, 'dashboard-queries.yaml');
      writeFileSync(
        file,
        stringify({
          groups: [
            {
              name: 'dashboard',
              rules: queries.map((q, i) => ({
                record: `tgfed_dashboard:query_${i}`,
                expr: q.expr,
              })),
            },
          ],
        }),
      );
      const result = await run(promtool, ['check', 'rules', file]).catch(
        (err: { stdout?: string; stderr?: string }) => ({
          stdout: err.stdout ?? '',
          stderr: err.stderr ?? 'promtool failed',
        }),
      );
      expect(result.stderr).toBe('');
      expect(result.stdout).toContain(`SUCCESS: ${queries.length} rules found`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
