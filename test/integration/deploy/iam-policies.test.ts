import { readFileSync, readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { repoRoot } from './helm-render.js';

// deploy/iam: the workers' role may only assume the target roles; each target role may only do
// what the workers call on ELBv2, scoped to resources wherever IAM allows it.

interface Statement {
  Sid?: string;
  Effect: 'Allow' | 'Deny';
  Action: string | string[];
  Resource?: string | string[];
  Principal?: { AWS?: string | string[] };
  Condition?: Record<string, Record<string, string | string[]>>;
}
interface PolicyDocument {
  Version: string;
  Statement: Statement[];
}

const iamDir = join(repoRoot, 'deploy/iam');
const policy = (name: string): PolicyDocument =>
  JSON.parse(readFileSync(join(iamDir, name), 'utf8')) as PolicyDocument;
const list = (v: string | string[] | undefined): string[] =>
  v === undefined ? [] : Array.isArray(v) ? v : [v];

/** Listener-rule weighting of pools (DESIGN.md, Pools): allowed ahead of the code that calls it. */
const listenerWeightingActions = [
  'elasticloadbalancing:DescribeListeners',
  'elasticloadbalancing:DescribeRules',
  'elasticloadbalancing:ModifyListener',
  'elasticloadbalancing:ModifyRule',
];
/** Describe* actions of ELBv2 support no resource-level permissions: they need "*". */
const describeActions = /^elasticloadbalancing:Describe/;

/** TypeScript sources of the product (not tests, not the ELBv2 simulator, which serves calls). */
function productSources(): { path: string; text: string }[] {
  const out: { path: string; text: string }[] = [];
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) {
        if (entry.name !== 'simulator' && entry.name !== 'generated') walk(path);
      } else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) {
        out.push({ path: relative(repoRoot, path), text: readFileSync(path, 'utf8') });
      }
    }
  };
  for (const top of ['agent', 'hub', 'shared']) walk(join(repoRoot, top));
  return out;
}

/** The ELBv2 actions the product calls: every `new XCommand(` in a file using the ELBv2 client. */
function elbv2ActionsCalled(): string[] {
  const actions = new Set<string>();
  for (const { text } of productSources()) {
    if (!text.includes('@aws-sdk/client-elastic-load-balancing-v2')) continue;
    for (const match of text.matchAll(/new (\w+)Command\(/g)) {
      actions.add(`elasticloadbalancing:${match[1]}`);
    }
  }
  return [...actions].sort();
}

function allowed(document: PolicyDocument): Map<string, Statement[]> {
  const byAction = new Map<string, Statement[]>();
  for (const statement of document.Statement) {
    expect(statement.Effect).toBe('Allow');
    for (const action of list(statement.Action)) {
      expect(action, 'no wildcard actions').not.toContain('*');
      byAction.set(action, [...(byAction.get(action) ?? []), statement]);
    }
  }
  return byAction;
}

/** Calls moto's IAM query API (moto does not check signatures) and resolves status and body. */
async function motoIam(params: Record<string, string>): Promise<{ status: number; body: string }> {
  const response = await fetch(inject('motoEndpoint'), {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      // moto routes by the credential scope's service name.
      authorization:
        'AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0',
    },
    body: new URLSearchParams({ Version: '2010-05-08', ...params }),
  });
  return { status: response.status, body: await response.text() };
}

describe('deploy/iam policies', () => {
  it('let the target role do every ELBv2 call the workers make, and little more', () => {
    const called = elbv2ActionsCalled();
    expect(called).toEqual(
      expect.arrayContaining([
        'elasticloadbalancing:DeregisterTargets',
        'elasticloadbalancing:DescribeTargetHealth',
        'elasticloadbalancing:RegisterTargets',
      ]),
    );
    const granted = allowed(policy('target-role-policy.json'));
    for (const action of called) expect([...granted.keys()]).toContain(action);
    const extra = [...granted.keys()].filter((a) => !called.includes(a));
    for (const action of extra) {
      expect([...listenerWeightingActions, 'elasticloadbalancing:DescribeTargetGroups']).toContain(
        action,
      );
    }
  });

  it('scope every mutating ELBv2 action to resource ARNs and tagged resources', () => {
    for (const [action, statements] of allowed(policy('target-role-policy.json'))) {
      for (const statement of statements) {
        const resources = list(statement.Resource);
        if (describeActions.test(action)) {
          expect(resources).toEqual(['*']);
          continue;
        }
        expect(resources.length).toBeGreaterThan(0);
        for (const resource of resources) {
          expect(resource).toMatch(
            /^arn:aws:elasticloadbalancing:[^:]*:\d{12}:(targetgroup|listener|listener-rule)\//,
          );
        }
        expect(statement.Condition?.['StringEquals']?.['aws:ResourceTag/tgfed.io/federated']).toBe(
          'true',
        );
      }
    }
  });

  it('let the worker role only assume named target roles, which trust it only with the external id', () => {
    const uses = productSources().filter((s) => s.text.includes('fromTemporaryCredentials('));
    expect(uses.map((s) => s.path)).toEqual(['hub/aws/elbv2-target-group-clients.ts']);
    expect(uses[0]?.text).toContain('ExternalId');

    const worker = allowed(policy('worker-policy.json'));
    expect([...worker.keys()]).toEqual(['sts:AssumeRole']);
    for (const statement of worker.get('sts:AssumeRole') ?? []) {
      for (const resource of list(statement.Resource)) {
        expect(resource).toMatch(/^arn:aws:iam::\d{12}:role\/[\w+=,.@-]+$/);
      }
    }

    const trust = policy('target-role-trust-policy.json');
    expect(trust.Statement).toHaveLength(1);
    const statement = trust.Statement[0]!;
    expect(list(statement.Action)).toEqual(['sts:AssumeRole']);
    expect(list(statement.Principal?.AWS)).toEqual([
      expect.stringMatching(/^arn:aws:iam::\d{12}:role\/[\w+=,.@-]+$/),
    ]);
    expect(statement.Condition?.['StringEquals']?.['sts:ExternalId']).toEqual(expect.any(String));
  });

  it('are documents IAM accepts (moto validates policy grammar as IAM does)', async () => {
    const suffix = Date.now().toString(36);
    const created = await Promise.all([
      motoIam({
        Action: 'CreatePolicy',
        PolicyName: `tgfed-worker-${suffix}`,
        PolicyDocument: readFileSync(join(iamDir, 'worker-policy.json'), 'utf8'),
      }),
      motoIam({
        Action: 'CreatePolicy',
        PolicyName: `tgfed-target-${suffix}`,
        PolicyDocument: readFileSync(join(iamDir, 'target-role-policy.json'), 'utf8'),
      }),
      motoIam({
        Action: 'CreateRole',
        RoleName: `tgfed-target-${suffix}`,
        AssumeRolePolicyDocument: readFileSync(
          join(iamDir, 'target-role-trust-policy.json'),
          'utf8',
        ),
      }),
    ]);
    for (const { status, body } of created) expect(status, body).toBe(200);

    // The same check refuses a document that IAM would refuse.
    const malformed = await motoIam({
      Action: 'CreatePolicy',
      PolicyName: `tgfed-malformed-${suffix}`,
      PolicyDocument: JSON.stringify({
        Version: '2012-10-17',
        Statement: [{ Effect: 'Allow', Action: 'RegisterTargets', Resource: '*' }],
      }),
    });
    expect(malformed.status).toBe(400);
    expect(malformed.body).toContain('MalformedPolicyDocument');
  });
});
