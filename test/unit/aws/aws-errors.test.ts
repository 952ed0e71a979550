import { describe, expect, it } from 'vitest';
import {
  InvalidTargetException,
  TargetGroupNotFoundException,
  TooManyTargetsException,
} from '@aws-sdk/client-elastic-load-balancing-v2';
import { AwsCallError, classifyAwsError } from '../../../hub/aws/index.js';

function sdkError(name: string, status: number): Error {
  return Object.assign(new Error(`${name} happened`), {
    name,
    $fault: status >= 500 ? 'server' : 'client',
    $metadata: { httpStatusCode: status },
  });
}

const meta = { $metadata: { httpStatusCode: 400 }, message: 'no' };

describe('classifyAwsError', () => {
  it('tells the ELBv2 error classes apart by their modeled exceptions', () => {
    expect(classifyAwsError(new TargetGroupNotFoundException(meta))).toBe('not-found');
    expect(classifyAwsError(new TooManyTargetsException(meta))).toBe('quota-exceeded');
    expect(classifyAwsError(new InvalidTargetException(meta))).toBe('invalid-target');
  });

  it('recognizes throttling, access denied and transient failures', () => {
    expect(classifyAwsError(sdkError('Throttling', 400))).toBe('throttling');
    expect(classifyAwsError(sdkError('AccessDenied', 403))).toBe('access-denied');
    expect(classifyAwsError(sdkError('SomethingForbidden', 403))).toBe('access-denied');
    expect(classifyAwsError(sdkError('InternalFailure', 500))).toBe('transient');
    expect(classifyAwsError(sdkError('ServiceUnavailable', 503))).toBe('transient');
    expect(classifyAwsError(Object.assign(new Error('reset'), { code: 'ECONNRESET' }))).toBe(
      'transient',
    );
  });

  it('calls anything else unknown', () => {
    expect(classifyAwsError(sdkError('ValidationError', 400))).toBe('unknown');
    expect(classifyAwsError('a string')).toBe('unknown');
  });
});

describe('AwsCallError', () => {
  it('keeps the operation, the code, the class and the cause', () => {
    const cause = sdkError('Throttling', 400);
    const err = new AwsCallError('RegisterTargets', cause);
    expect(err).toMatchObject({
      operation: 'RegisterTargets',
      code: 'Throttling',
      errorClass: 'throttling',
    });
    expect(err.cause).toBe(cause);
    expect(err.message).toContain('RegisterTargets failed: Throttling');
  });
});
