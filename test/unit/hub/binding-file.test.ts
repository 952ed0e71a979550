import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LabelSelectorOperator } from '../../../shared/index.js';
import {
  BindingFileError,
  loadBindingFile,
  parseBindingFile,
} from '../../../hub/federation/binding-file.js';
import { targetGroupArn } from '../../support/binding-fixtures.js';

const GOOD = `
bindings:
  - name: web
    services: { namespace: shop, name: web }
    port: { name: http }
    clusters:
      names: [eu-1]
      labels:
        matchLabels: { env: prod }
        matchExpressions:
          - { key: tier, operator: NotIn, values: [canary] }
    policy: { keepTerminating: true }
    targetGroup:
      arn: ${targetGroupArn(1)}
      roleArn: arn:aws:iam::111111111111:role/tgfed
      externalId: shop-web
      availabilityZone: all
  - name: api
    services:
      labels:
        matchExpressions:
          - { key: app, operator: LABEL_SELECTOR_OPERATOR_EXISTS }
    port: { number: 8443 }
    pool:
      groups:
        - { arn: ${targetGroupArn(2)}, capacity: 500 }
        - { arn: ${targetGroupArn(3)} }
`;

/** The `file:index:field` lines of the error a file raises. */
function violationsOf(text: string): string[] {
  try {
    parseBindingFile(text, 'bindings.yaml');
  } catch (err) {
    expect(err).toBeInstanceOf(BindingFileError);
    return (err as BindingFileError).violations.map((v) => `${v.file}:${v.index}:${v.field}`);
  }
  throw new Error('expected the file to be rejected');
}

describe('binding files', () => {
  it('loads a valid file into normalized bindings', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tgfed-bindings-'));
    const file = join(dir, 'bindings.yaml');
    writeFileSync(file, GOOD);
    const [web, api, ...rest] = loadBindingFile(file);
    expect(rest).toEqual([]);
    expect(web).toMatchObject({
      name: 'web',
      services: { namespace: 'shop', name: 'web' },
      port: { port: { $case: 'name', name: 'http' } },
      clusters: {
        names: ['eu-1'],
        labels: {
          matchLabels: { env: 'prod' },
          matchExpressions: [
            {
              key: 'tier',
              operator: LabelSelectorOperator.LABEL_SELECTOR_OPERATOR_NOT_IN,
              values: ['canary'],
            },
          ],
        },
      },
      policy: { includeNotReady: false, keepTerminating: true },
      target: {
        $case: 'targetGroup',
        targetGroup: {
          arn: targetGroupArn(1),
          accountId: '111111111111',
          region: 'eu-west-1',
          targetType: 'ip',
          capacity: 1000,
          availabilityZone: 'all',
        },
      },
    });
    expect(api?.target).toMatchObject({
      $case: 'pool',
      pool: { groups: [{ capacity: 500 }, { capacity: 1000 }] },
    });
  });

  it('accepts a bare list and an empty file', () => {
    expect(
      parseBindingFile(
        `- name: a\n  services: { namespace: x }\n  port: { number: 80 }\n  targetGroup: { arn: ${targetGroupArn()} }\n`,
        'f',
      ).map((b) => b.name),
    ).toEqual(['a']);
    expect(parseBindingFile('', 'f')).toEqual([]);
  });

  it('lists every violation as file:index:field', () => {
    const text = `
- name: ok
  services: { namespace: shop }
  port: { number: 80 }
  targetGroup: { arn: ${targetGroupArn()} }
- name: Bad_Name
  services: { namespace: shop }
  port: { number: 70000 }
  pool:
    groups:
      - { arn: ${targetGroupArn(1)} }
      - { arn: ${targetGroupArn(2)}, roleArn: not-a-role }
- name: typo
  services: { namespace: shop }
  port: { number: 80 }
  targetGroup: { arn: ${targetGroupArn()}, roleARN: arn:aws:iam::111111111111:role/x }
- name: ok
  services: { namespace: shop }
  port: { number: 81 }
  targetGroup: { arn: ${targetGroupArn()} }
- name: both
  services: { namespace: shop }
  port: { name: http, number: 80 }
  targetGroup: { arn: ${targetGroupArn()} }
  pool: { groups: [] }
`;
    expect(violationsOf(text)).toEqual([
      'bindings.yaml:1:name',
      'bindings.yaml:1:port.number',
      'bindings.yaml:1:pool.groups[1].roleArn',
      'bindings.yaml:2:targetGroup.roleARN',
      'bindings.yaml:3:name',
      'bindings.yaml:4:port',
      'bindings.yaml:4:pool',
    ]);
  });

  it('names the file in the message so an operator can find the line to fix', () => {
    expect(() => parseBindingFile('- name: x\n', '/etc/tgfed/bindings.yaml')).toThrow(
      /\/etc\/tgfed\/bindings\.yaml:0:services: required/,
    );
  });

  it('rejects YAML that does not parse and content that is not a list', () => {
    expect(violationsOf('bindings: [')).toEqual(['bindings.yaml:-1:']);
    expect(violationsOf('name: web\n')).toEqual(['bindings.yaml:-1:bindings']);
    expect(violationsOf('- 42\n')).toEqual(['bindings.yaml:0:']);
  });

  it('reports a missing file as a binding file error', () => {
    expect(() => loadBindingFile('/nonexistent/bindings.yaml')).toThrow(BindingFileError);
  });
});
