/** The admin call presented no credentials the hub accepts. */
export class AdminUnauthenticatedError extends Error {
  override readonly name = 'AdminUnauthenticatedError';
}

/** The caller's role does not allow the method. */
export class AdminPermissionDeniedError extends Error {
  override readonly name = 'AdminPermissionDeniedError';
}

/** The request is malformed in a way that is not a binding's field-level problem. */
export class AdminInvalidRequestError extends Error {
  override readonly name = 'AdminInvalidRequestError';
}

/** The named object (cluster, binding, target group, held operation) does not exist. */
export class AdminNotFoundError extends Error {
  override readonly name = 'AdminNotFoundError';
}

/** The method needs a hub component that is not wired into this hub (yet). */
export class AdminNotImplementedError extends Error {
  override readonly name = 'AdminNotImplementedError';
}
