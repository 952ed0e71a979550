import * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { fieldViolationsMetadata } from '../../../hub/admin/index.js';
import { labelSelectorText, servicesText } from '../../../hub/cli/admin/admin-views.js';
import { CliCommandError, cliErrorOf } from '../../../hub/cli/admin/cli-errors.js';
import { age, renderTable } from '../../../hub/cli/admin/cli-output.js';
import { LabelSelectorOperator } from '../../../shared/index.js';
import { binding } from '../../support/binding-fixtures.js';
import { statusError } from './fake-admin-api.js';

function mapped(code: grpc.status, details: string, metadata?: grpc.Metadata) {
  const err = cliErrorOf(statusError(code, details, metadata), 'hub.example:7444');
  if (!(err instanceof CliCommandError)) throw new Error('not mapped');
  return { exitCode: err.exitCode, message: err.message };
}

describe('cliErrorOf', () => {
  it('maps an unreachable or silent hub to exit 3', () => {
    expect(mapped(grpc.status.UNAVAILABLE, 'No connection established. Resolution note: ')).toEqual(
      {
        exitCode: 3,
        message: 'hub hub.example:7444 unreachable (14 UNAVAILABLE: No connection established)',
      },
    );
    expect(mapped(grpc.status.DEADLINE_EXCEEDED, 'Deadline exceeded')).toEqual({
      exitCode: 3,
      message:
        'hub hub.example:7444 did not answer in time (4 DEADLINE_EXCEEDED: Deadline exceeded); see --timeout',
    });
  });

  it('maps refused credentials and roles to exit 4', () => {
    expect(mapped(grpc.status.UNAUTHENTICATED, 'unknown bearer token').exitCode).toBe(4);
    expect(mapped(grpc.status.PERMISSION_DENIED, 'needs the admin role')).toEqual({
      exitCode: 4,
      message: 'not allowed (7 PERMISSION_DENIED: needs the admin role)',
    });
  });

  it('maps refused operations to exit 1, listing field violations', () => {
    expect(mapped(grpc.status.NOT_FOUND, 'no binding web')).toEqual({
      exitCode: 1,
      message: '5 NOT_FOUND: no binding web',
    });
    expect(mapped(grpc.status.ABORTED, 'version conflict').exitCode).toBe(1);
    expect(
      mapped(
        grpc.status.INVALID_ARGUMENT,
        'x',
        fieldViolationsMetadata([
          { field: 'name', description: 'not a DNS label' },
          { field: 'port', description: 'required' },
        ]),
      ),
    ).toEqual({
      exitCode: 1,
      message:
        'rejected (INVALID_ARGUMENT): invalid fields\n  name: not a DNS label\n  port: required',
    });
  });

  it('passes anything that is not a gRPC status through', () => {
    const err = new TypeError('boom');
    expect(cliErrorOf(err, 'h:1')).toBe(err);
  });
});

describe('table output', () => {
  it('aligns columns, marks empty cells and keeps no trailing blanks', () => {
    expect(
      renderTable(
        ['name', 'state', 'labels'],
        [
          ['east', 'connected', ''],
          ['a-longer-name', '', 'env=prod'],
        ],
      ),
    ).toBe(
      'NAME            STATE       LABELS\neast            connected   -\na-longer-name   -           env=prod\n',
    );
  });

  it('writes ages in the largest sensible unit', () => {
    const now = 10 * 86_400_000;
    expect(age(0, now)).toBe('-');
    expect(age(now - 90_000, now)).toBe('90s');
    expect(age(now - 5 * 60_000, now)).toBe('5m');
    expect(age(now - 3 * 3_600_000, now)).toBe('3h');
    expect(age(now - 3 * 86_400_000, now)).toBe('3d');
    expect(age(now + 5_000, now)).toBe('0s');
  });

  it('writes selectors the way kubectl does', () => {
    expect(
      labelSelectorText({
        matchLabels: { tier: 'web', env: 'prod' },
        matchExpressions: [
          {
            key: 'region',
            operator: LabelSelectorOperator.LABEL_SELECTOR_OPERATOR_IN,
            values: ['eu', 'us'],
          },
          {
            key: 'canary',
            operator: LabelSelectorOperator.LABEL_SELECTOR_OPERATOR_DOES_NOT_EXIST,
            values: [],
          },
          {
            key: 'zone',
            operator: LabelSelectorOperator.LABEL_SELECTOR_OPERATOR_EXISTS,
            values: [],
          },
          {
            key: 'os',
            operator: LabelSelectorOperator.LABEL_SELECTOR_OPERATOR_NOT_IN,
            values: ['win'],
          },
        ],
      }),
    ).toBe('env=prod,tier=web,region in (eu,us),!canary,zone,os notin (win)');
    expect(servicesText(binding())).toBe('shop/web');
    expect(
      servicesText(
        binding({
          services: {
            namespace: 'shop',
            name: '',
            labels: { matchLabels: { app: 'web' }, matchExpressions: [] },
          },
        }),
      ),
    ).toBe('shop/*[app=web]');
    expect(
      servicesText(binding({ services: { namespace: '', name: '', labels: undefined } })),
    ).toBe('*');
  });
});
