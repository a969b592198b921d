// The one place where errors become gRPC statuses.
import { status, type ServiceError, Metadata } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { TaskError, type TaskErrorKind } from '../errors.js';

export const GRPC_CODES: Record<TaskErrorKind, status> = {
  InvalidArgument: status.INVALID_ARGUMENT,
  NotFound: status.NOT_FOUND,
  AlreadyExists: status.ALREADY_EXISTS,
  FailedPrecondition: status.FAILED_PRECONDITION,
  ResourceExhausted: status.RESOURCE_EXHAUSTED,
  Unavailable: status.UNAVAILABLE,
  Internal: status.INTERNAL,
};

/** Status details travel in an HTTP/2 trailer, whose size is limited: never echo more than this. */
const MAX_DETAILS = 2048;
const bounded = (text: string) => (text.length > MAX_DETAILS ? `${text.slice(0, MAX_DETAILS)}… (cut)` : text);

export function toServiceError(error: unknown, log: Logger): Partial<ServiceError> {
  if (error instanceof TaskError) {
    return { code: GRPC_CODES[error.kind], details: bounded(error.message), metadata: new Metadata() };
  }
  log.error({ err: error }, 'unexpected error while handling a request');
  const message = error instanceof Error ? error.message : String(error);
  return { code: status.INTERNAL, details: bounded(`internal error: ${message}`), metadata: new Metadata() };
}
