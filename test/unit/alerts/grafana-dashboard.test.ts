import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { contractMetrics, unknownMetrics, usedMetrics } from './contract-metrics.js';

interface Target {
  expr?: string;
  datasource?: { type: string; uid: string };
}
interface Panel {
  type: string;
  title: string;
  datasource?: { type: string; uid: string };
  targets?: Target[];
  panels?: Panel[];
  gridPos: { h: number; w: number; x: number; y: number };
}
interface Dashboard {
  schemaVersion: number;
  uid: string;
  title: string;
  panels: Panel[];
  templating: { list: { name: string; type: string; query: unknown }[] };
}

const path = resolve(import.meta.dirname, '../../../deploy/grafana/tgfed-dashboard.json');
const dashboard = JSON.parse(readFileSync(path, 'utf8')) as Dashboard;
const panels = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
const queryPanels = panels.filter((p) => p.type !== 'row');
const exprs = queryPanels.flatMap((p) => (p.targets ?? []).map((t) => t.expr ?? ''));

describe('the Grafana dashboard', () => {
  it('is a current-schema dashboard whose Prometheus data source is a variable', () => {
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(36);
    expect(dashboard.uid).toBe('tgfed-overview');
    expect(dashboard.templating.list.find((v) => v.name === 'datasource')).toMatchObject({
      type: 'datasource',
      query: 'prometheus',
    });
    for (const panel of queryPanels) {
      expect(panel.datasource, panel.title).toEqual({ type: 'prometheus', uid: '${datasource}' });
      expect(panel.targets?.length, panel.title).toBeGreaterThan(0);
      for (const target of panel.targets ?? []) expect(target.datasource).toEqual(panel.datasource);
    }
  });

  it('uses only metric names of the metrics contract', () => {
    expect(exprs.length).toBeGreaterThan(20);
    expect(exprs.flatMap(unknownMetrics)).toEqual([]);
  });

  it('shows the golden signals, propagation latency, AWS calls against limits and fill', () => {
    const used = new Set(exprs.flatMap(usedMetrics));
    // Everything but the agent's batch counter (its changes and bytes are shown instead).
    const shown = Object.keys(contractMetrics).filter(
      (m) => m !== 'tgfed_agent_batches_sent_total',
    );
    expect(shown.filter((m) => !used.has(m))).toEqual([]);
    const latency = exprs.filter((e) => e.includes('tgfed_propagation_latency_seconds_bucket'));
    expect(latency.some((e) => e.startsWith('histogram_quantile(0.5,'))).toBe(true);
    expect(latency.some((e) => e.startsWith('histogram_quantile(0.99,'))).toBe(true);
    const awsLimits = queryPanels.filter((p) =>
      (p.targets ?? []).some((t) => t.expr?.includes('tgfed_aws_rate_limit_per_second')),
    );
    for (const panel of awsLimits) {
      const panelExprs = (panel.targets ?? []).map((t) => t.expr ?? '');
      expect(
        panelExprs.some((e) => /sum by \(account\) \(rate\(tgfed_aws_calls_total/.test(e)),
      ).toBe(true);
    }
    expect(awsLimits.length).toBeGreaterThanOrEqual(2);
  });

  it('lays panels out without overlaps within the 24-column grid', () => {
    const cells = new Set<string>();
    for (const panel of panels) {
      const { x, y, w, h } = panel.gridPos;
      expect(x + w, panel.title).toBeLessThanOrEqual(24);
      for (let i = x; i < x + w; i++) {
        for (let j = y; j < y + h; j++) {
          const cell = `${i},${j}`;
          expect(cells.has(cell), `${panel.title} overlaps at ${cell}`).toBe(false);
          cells.add(cell);
        }
      }
    }
  });
});
