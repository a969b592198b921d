// Which failed image pulls are worth trying again, and when: the
// ImagePullBackOff policy of the container backend, kept free of I/O so that
// it can be tested on its own (test/unit/image-pull-retry.test.ts).
//
// containerd's CRI answers most registry failures with code UNKNOWN and the
// registry's words in the message ("unexpected status ... 503 Service
// Unavailable", "dial tcp ...: connect: connection refused"), so the message
// decides as often as the code. A failure that says the image cannot be had
// as asked (not found, unauthorized or denied, an invalid reference) is final
// at once: asking again gives the same answer. A failure that says the
// registry or the way to it is having a bad moment (5xx, 429, connection
// refused or reset, timeouts, a DNS server failure) is transient. Anything
// else is final too: an error we cannot place is better reported at once
// than hidden behind minutes of retries.
import { status } from '@grpc/grpc-js';

export type PullFailure = 'transient' | 'final';

/** gRPC codes that say "not now", whatever the message. */
const TRANSIENT_CODES: ReadonlySet<status> = new Set([status.UNAVAILABLE, status.DEADLINE_EXCEEDED, status.RESOURCE_EXHAUSTED, status.ABORTED]);

/** gRPC codes that say "never like this", whatever the message. */
const FINAL_CODES: ReadonlySet<status> = new Set([
  status.NOT_FOUND,
  status.INVALID_ARGUMENT,
  status.PERMISSION_DENIED,
  status.UNAUTHENTICATED,
  status.UNIMPLEMENTED,
  status.FAILED_PRECONDITION,
  status.OUT_OF_RANGE,
]);

/**
 * The words of final failures as containerd and registries put them: a
 * missing image or tag ("not found", "manifest unknown", "name unknown", 404),
 * refused credentials ("401 Unauthorized", "403 Forbidden", "unauthorized", "denied", "insufficient_scope"),
 * a malformed reference, an image without this platform, and a registry host
 * that does not exist (Go's "no such host" is NXDOMAIN; a DNS server that
 * fails says "server misbehaving" or times out instead, both transient).
 */
const FINAL_WORDS =
  /\bnot found\b|manifest unknown|name unknown|\b40[134] [A-Z]|unauthori[sz]ed|\bdenied\b|insufficient_scope|forbidden|invalid reference|repository name must|no match for platform|no such host/i;

/**
 * The words of transient failures: registry 5xx and 429 answers (a code is
 * only taken as an HTTP status when its reason phrase follows, "503 Service
 * Unavailable", so that digits in an image name do not count), connections
 * refused, reset or cut short, and timeouts of any layer.
 */
const TRANSIENT_WORDS =
  /\b5\d\d [A-Z]|\b429 [A-Z]|too ?many ?requests|service unavailable|bad gateway|gateway time-?out|internal server error|connection refused|connection reset|broken pipe|\bEOF\b|i\/o timeout|handshake timeout|timed out|deadline exceeded|temporary failure|server misbehaving|network is unreachable|no route to host|try again/i;

/** Whether a failed PullImage (gRPC code and the runtime's message) is worth trying again. */
export function classifyPullFailure(code: status, message: string): PullFailure {
  if (FINAL_CODES.has(code)) return 'final';
  if (TRANSIENT_CODES.has(code)) return 'transient';
  if (FINAL_WORDS.test(message)) return 'final';
  if (TRANSIENT_WORDS.test(message)) return 'transient';
  return 'final';
}

export interface PullBackoff {
  /** The wait after the first failed attempt. */
  initialMs: number;
  /** No wait is longer than this. */
  maxMs: number;
}

/**
 * Smaller than the kubelet's 10 s doubling to 300 s: an executor's tasks are
 * often short-lived, and a registry blip should cost them seconds, not
 * minutes. --image-pull-timeout bounds the attempts and waits together.
 */
export const DEFAULT_PULL_BACKOFF: PullBackoff = { initialMs: 1000, maxMs: 30_000 };

/** The wait after failed attempt `attempt` (1-based): initialMs doubling, at most maxMs. */
export function pullBackoffMs(attempt: number, backoff: PullBackoff = DEFAULT_PULL_BACKOFF): number {
  const exponent = Math.max(0, Math.min(attempt - 1, 30));
  return Math.min(backoff.maxMs, backoff.initialMs * 2 ** exponent);
}

/** What follows a transient failure: wait waitMs, then try again or give up. */
export interface AfterTransientFailure {
  waitMs: number;
  afterWait: 'retry' | 'give-up';
}

/**
 * The step after failed attempt `attempt` with leftMs of --image-pull-timeout
 * left. A back-off that reaches the deadline is the last wait: the decision
 * to give up is taken here, before it, and not by reading the clock after the
 * timer fires. (A timer may fire a millisecond before the clock says its time
 * is up; a decision read from the clock then started one more attempt with a
 * 1 ms deadline, and that attempt's "Deadline exceeded" replaced the
 * registry's real error in the message the task ended with.)
 */
export function afterTransientFailure(attempt: number, leftMs: number, backoff: PullBackoff = DEFAULT_PULL_BACKOFF): AfterTransientFailure {
  const left = Math.max(0, leftMs);
  const backoffMs = pullBackoffMs(attempt, backoff);
  return backoffMs < left ? { waitMs: backoffMs, afterWait: 'retry' } : { waitMs: left, afterWait: 'give-up' };
}
