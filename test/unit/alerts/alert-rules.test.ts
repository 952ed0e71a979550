import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { hubAlertDefinitions } from '../../../hub/alerts/index.js';
import { unknownMetrics } from './contract-metrics.js';

interface Rule {
  alert: string;
  expr: string;
  labels: { severity: string };
}

const rulesPath = resolve(import.meta.dirname, '../../../deploy/alerts/tgfed-rules.yaml');
const rules = (
  parse(readFileSync(rulesPath, 'utf8')) as { groups: { rules: Rule[] }[] }
).groups.flatMap((g) => g.rules);

describe('the Prometheus alert rules', () => {
  it('use only metric names of the metrics contract', () => {
    expect(rules.length).toBeGreaterThan(0);
    expect(rules.flatMap((r) => unknownMetrics(r.expr).map((m) => `${r.alert}: ${m}`))).toEqual([]);
  });

  it('include every alert the hub evaluates, with the same severity', () => {
    const bySeverity = Object.fromEntries(rules.map((r) => [r.alert, r.labels.severity]));
    for (const [name, definition] of Object.entries(hubAlertDefinitions)) {
      expect(bySeverity[name], name).toBe(definition.severity);
    }
  });
});

describe('the metric name check', () => {
  it('refuses names outside the contract and counters without _total', () => {
    expect(unknownMetrics('rate(tgfed_reconciles[5m]) + tgfed_made_up')).toEqual([
      'tgfed_reconciles',
      'tgfed_made_up',
    ]);
    expect(unknownMetrics('rate(tgfed_queue_jobs_bucket[5m])')).toEqual([
      'tgfed_queue_jobs_bucket',
    ]);
    expect(unknownMetrics('rate(tgfed_hub_apply_duration_seconds_count[5m])')).toEqual([]);
  });
});
