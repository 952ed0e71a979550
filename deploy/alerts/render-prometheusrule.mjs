// Writes tgfed-prometheusrule.yaml (a Prometheus Operator PrometheusRule) from tgfed-rules.yaml,
// so that the two never disagree: `node deploy/alerts/render-prometheusrule.mjs`. With `--check`
// it only reports whether the manifest is current (exit 1 when not).
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as prettier from 'prettier';
import { parse, stringify } from 'yaml';

const here = dirname(fileURLToPath(import.meta.url));
const rulesPath = join(here, 'tgfed-rules.yaml');
const manifestPath = join(here, 'tgfed-prometheusrule.yaml');

const header = `# Generated from tgfed-rules.yaml by render-prometheusrule.mjs; do not edit by hand.
# The same alerting rules as a Prometheus Operator PrometheusRule. The release label must match
# your Prometheus' ruleSelector (kube-prometheus-stack selects release=<its release name>).
`;

const rules = parse(readFileSync(rulesPath, 'utf8'));
const manifest = {
  apiVersion: 'monitoring.coreos.com/v1',
  kind: 'PrometheusRule',
  metadata: {
    name: 'tgfed',
    labels: {
      'app.kubernetes.io/name': 'tgfed',
      'app.kubernetes.io/component': 'alerts',
      release: 'kube-prometheus-stack',
    },
  },
  spec: { groups: rules.groups },
};
const text = await prettier.format(header + stringify(manifest, { lineWidth: 0 }), {
  ...(await prettier.resolveConfig(manifestPath)),
  filepath: manifestPath,
});

if (process.argv.includes('--check')) {
  const current = readFileSync(manifestPath, 'utf8');
  if (current !== text) {
    console.error(
      `${manifestPath} is out of date: run node ${join('deploy', 'alerts', 'render-prometheusrule.mjs')}`,
    );
    process.exit(1);
  }
} else {
  writeFileSync(manifestPath, text);
}
