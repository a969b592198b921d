// Errors the core raises on purpose. Each kind maps to exactly one gRPC code
// (src/api/status.ts); anything else that escapes is an internal error.

export type TaskErrorKind =
  | 'InvalidArgument'
  | 'NotFound'
  | 'AlreadyExists'
  | 'FailedPrecondition'
  | 'ResourceExhausted'
  | 'Unavailable'
  | 'Internal';

export class TaskError extends Error {
  constructor(
    readonly kind: TaskErrorKind,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'TaskError';
  }
}

export const invalidArgument = (message: string): TaskError => new TaskError('InvalidArgument', message);
export const notFound = (message: string): TaskError => new TaskError('NotFound', message);
export const alreadyExists = (message: string): TaskError => new TaskError('AlreadyExists', message);
export const failedPrecondition = (message: string): TaskError => new TaskError('FailedPrecondition', message);

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
