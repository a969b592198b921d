// The one error of the artifact module: what went wrong with one artifact, in
// words a user can act on. It becomes the message of the task's
// `terminated {reason: ArtifactFetchFailed}`.
export class ArtifactError extends Error {
  /** Whether trying the same request again may succeed (5xx, 429, a dropped connection). */
  readonly transient: boolean;

  constructor(message: string, options: { transient?: boolean; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ArtifactError';
    this.transient = options.transient ?? false;
  }
}
