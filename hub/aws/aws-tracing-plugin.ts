import { SpanKind, type Attributes, type Tracer } from '@opentelemetry/api';
import type {
  HandlerExecutionContext,
  InitializeHandler,
  InitializeHandlerArguments,
  InitializeHandlerOutput,
  MetadataBearer,
  Pluggable,
} from '@smithy/types';
import { SpanAttribute, markSpanFailed } from '../../shared/index.js';

/**
 * An AWS SDK v3 client plugin that makes every call a client span, child of the active span (the
 * reconcile): `ElasticLoadBalancingV2.RegisterTargets`, `STS.AssumeRole`, with `rpc.*`,
 * `aws.request_id`, the HTTP status and the region, named and attributed as
 * @opentelemetry/instrumentation-aws-sdk does.
 *
 * Why not that instrumentation: it patches the SDK's modules through require hooks, which see
 * neither ESM imports nor the esbuild bundles tgfed ships, and it would need a global tracer
 * provider. The middleware stack is the SDK's own extension point and works the same everywhere.
 * It sits in the `initialize` step, so a span covers the whole call: credentials (an AssumeRole
 * is its child), signing, the SDK's retries.
 */
export function awsTracingPlugin<Input extends object, Output extends MetadataBearer>(
  tracer: Tracer,
  attributes: Attributes = {},
): Pluggable<Input, Output> {
  return {
    applyToStack: (stack) => {
      stack.add(
        (next: InitializeHandler<Input, Output>, context: HandlerExecutionContext) =>
          (args: InitializeHandlerArguments<Input>) =>
            traced(tracer, attributes, context, () => next(args)),
        { step: 'initialize', name: 'tgfedTracing', priority: 'high', override: true },
      );
    },
  };
}

function traced<Output extends MetadataBearer>(
  tracer: Tracer,
  attributes: Attributes,
  context: HandlerExecutionContext,
  call: () => Promise<InitializeHandlerOutput<Output>>,
): Promise<InitializeHandlerOutput<Output>> {
  const service = (context.clientName ?? 'AWS').replace(/Client$/, '');
  const operation = (context.commandName ?? 'Unknown').replace(/Command$/, '');
  return tracer.startActiveSpan(
    `${service}.${operation}`,
    {
      kind: SpanKind.CLIENT,
      attributes: {
        ...attributes,
        [SpanAttribute.RPC_SYSTEM]: 'aws-api',
        [SpanAttribute.RPC_SERVICE]: service,
        [SpanAttribute.RPC_METHOD]: operation,
        [SpanAttribute.CLOUD_PROVIDER]: 'aws',
      },
    },
    async (span) => {
      try {
        const out = await call();
        const metadata = out.output.$metadata;
        if (metadata.requestId !== undefined) {
          span.setAttribute(SpanAttribute.AWS_REQUEST_ID, metadata.requestId);
        }
        if (metadata.httpStatusCode !== undefined) {
          span.setAttribute(SpanAttribute.HTTP_RESPONSE_STATUS_CODE, metadata.httpStatusCode);
        }
        return out;
      } catch (err) {
        const metadata = (err as Partial<MetadataBearer> | undefined)?.$metadata;
        if (metadata?.requestId !== undefined) {
          span.setAttribute(SpanAttribute.AWS_REQUEST_ID, metadata.requestId);
        }
        if (metadata?.httpStatusCode !== undefined) {
          span.setAttribute(SpanAttribute.HTTP_RESPONSE_STATUS_CODE, metadata.httpStatusCode);
        }
        markSpanFailed(span, err);
        throw err;
      } finally {
        span.end();
      }
    },
  );
}
