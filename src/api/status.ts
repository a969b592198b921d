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

export function toServiceError(error: unknown, log: Logger): Partial<ServiceError> {
  if (error instanceof TaskError) {
    return { code: GRPC_CODES[error.kind], details: error.message, metadata: new Metadata() };
  }
  log.error({ err: error }, 'unexpected error while handling a request');
  const message = error instanceof Error ? error.message : String(error);
  return { code: status.INTERNAL, details: `internal error: ${message}`, metadata: new Metadata() };
}
