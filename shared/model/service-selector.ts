import type { LabelSelector, ServiceSelector, Subscription } from '../generated/tgfed/v1/agent.js';
import { LabelSelectorOperator } from '../generated/tgfed/v1/agent.js';
import type { ServiceKey } from '../generated/tgfed/v1/endpoint.js';

/** True when `labels` satisfy a Kubernetes label selector (an absent selector matches all). */
export function matchesLabelSelector(
  selector: LabelSelector | undefined,
  labels: Readonly<Record<string, string>>,
): boolean {
  if (selector === undefined) return true;
  for (const [key, value] of Object.entries(selector.matchLabels)) {
    if (labels[key] !== value) return false;
  }
  for (const { key, operator, values } of selector.matchExpressions) {
    const has = Object.hasOwn(labels, key);
    const value = labels[key];
    switch (operator) {
      case LabelSelectorOperator.LABEL_SELECTOR_OPERATOR_IN:
        if (!has || !values.includes(value ?? '')) return false;
        break;
      case LabelSelectorOperator.LABEL_SELECTOR_OPERATOR_NOT_IN:
        if (has && values.includes(value ?? '')) return false;
        break;
      case LabelSelectorOperator.LABEL_SELECTOR_OPERATOR_EXISTS:
        if (!has) return false;
        break;
      case LabelSelectorOperator.LABEL_SELECTOR_OPERATOR_DOES_NOT_EXIST:
        if (has) return false;
        break;
      default:
        // An operator this version does not know selects nothing rather than everything.
        return false;
    }
  }
  return true;
}

/** True when a service matches a selector: every set field must match. */
export function matchesServiceSelector(
  selector: ServiceSelector,
  service: ServiceKey,
  labels: Readonly<Record<string, string>>,
): boolean {
  return (
    (selector.namespace === '' || selector.namespace === service.namespace) &&
    (selector.name === '' || selector.name === service.name) &&
    matchesLabelSelector(selector.labels, labels)
  );
}

/** True when any selector of the subscription matches the service. */
export function isSubscribed(
  subscription: Subscription | undefined,
  service: ServiceKey,
  labels: Readonly<Record<string, string>>,
): boolean {
  return (subscription?.selectors ?? []).some((s) => matchesServiceSelector(s, service, labels));
}
