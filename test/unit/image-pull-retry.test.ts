// The ImagePullBackOff policy (src/runtime/container/image-pull-retry.ts):
// which failed pulls are tried again, in containerd's and grpc-js' own words,
// and how long the back-off between attempts is.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { status } from '@grpc/grpc-js';
import { afterTransientFailure, classifyPullFailure, DEFAULT_PULL_BACKOFF, pullBackoffMs } from '../../src/runtime/container/image-pull-retry.js';

const IMAGE = 'failed to pull and unpack image "registry.local:5000/team/app:v1"';

describe('which image pull failures are transient', () => {
  test('codes that say "not now" are transient whatever the message', () => {
    for (const code of [status.UNAVAILABLE, status.DEADLINE_EXCEEDED, status.RESOURCE_EXHAUSTED, status.ABORTED]) {
      assert.equal(classifyPullFailure(code, 'something'), 'transient', status[code]);
    }
  });

  test('codes that say "never like this" are final whatever the message', () => {
    for (const code of [status.NOT_FOUND, status.INVALID_ARGUMENT, status.PERMISSION_DENIED, status.UNAUTHENTICATED, status.UNIMPLEMENTED]) {
      assert.equal(classifyPullFailure(code, 'connection refused'), 'final', status[code]);
    }
  });

  test('registry 5xx and 429 answers, refused or broken connections and timeouts reported as UNKNOWN are transient', () => {
    for (const message of [
      `${IMAGE}: failed to resolve reference: unexpected status from HEAD request to https://registry.local:5000/v2/team/app/manifests/v1: 503 Service Unavailable`,
      `${IMAGE}: failed to copy: httpReadSeeker: failed open: unexpected status code https://r/v2/x/blobs/sha256:ab: 500 Internal Server Error`,
      `${IMAGE}: received unexpected HTTP status: 502 Bad Gateway`,
      `${IMAGE}: toomanyrequests: You have reached your pull rate limit`,
      `${IMAGE}: unexpected status: 429 Too Many Requests`,
      `${IMAGE}: failed to do request: Head "https://127.0.0.1:1/v2/x/manifests/latest": dial tcp 127.0.0.1:1: connect: connection refused`,
      `${IMAGE}: read tcp 10.0.0.2:40000->10.0.0.9:443: read: connection reset by peer`,
      `${IMAGE}: failed to copy: unexpected EOF`,
      `${IMAGE}: dial tcp 10.0.0.9:443: i/o timeout`,
      `${IMAGE}: net/http: TLS handshake timeout`,
      `${IMAGE}: lookup registry.local on 10.96.0.10:53: server misbehaving`,
      `${IMAGE}: lookup registry.local: Temporary failure in name resolution`,
      `${IMAGE}: dial tcp 10.0.0.9:443: connect: no route to host`,
    ]) {
      assert.equal(classifyPullFailure(status.UNKNOWN, message), 'transient', message);
    }
  });

  test('a missing image, refused credentials, a bad reference or an unknown registry host are final, even beside transient words', () => {
    for (const message of [
      `${IMAGE}: failed to resolve reference "docker.io/library/nope:latest": docker.io/library/nope:latest: not found`,
      `${IMAGE}: failed to fetch anonymous token: unexpected status: 401 Unauthorized`,
      `${IMAGE}: pull access denied, repository does not exist or may require authorization: server message: insufficient_scope: authorization failed`,
      `${IMAGE}: unexpected status: 403 Forbidden`,
      'failed to pull image "Busybox:UPPER": parse image name: invalid reference format: repository name must be lowercase',
      `${IMAGE}: no match for platform in manifest: not found`,
      `${IMAGE}: dial tcp: lookup registry.invalid on 10.96.0.10:53: no such host`,
      `${IMAGE}: GET https://r/v2/x/manifests/v1: MANIFEST_UNKNOWN: manifest unknown; timed out waiting`,
    ]) {
      assert.equal(classifyPullFailure(status.UNKNOWN, message), 'final', message);
    }
  });

  test('digits in an image name are not taken for an HTTP status, and a failure nobody can place is final', () => {
    assert.equal(classifyPullFailure(status.UNKNOWN, 'failed to pull and unpack image "r/app-503:v1": failed to unpack: wrong diff id'), 'final');
    assert.equal(classifyPullFailure(status.UNKNOWN, 'failed to pull and unpack image "r/app:404": failed to extract layer: no space left on device'), 'final');
    assert.equal(classifyPullFailure(status.INTERNAL, 'something went wrong'), 'final');
  });
});

describe('the back-off between pull attempts', () => {
  test('starts at 1 s and doubles after each failed attempt up to 30 s', () => {
    assert.deepEqual(
      [1, 2, 3, 4, 5, 6, 7, 50].map((attempt) => pullBackoffMs(attempt)),
      [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000],
    );
    assert.deepEqual(DEFAULT_PULL_BACKOFF, { initialMs: 1000, maxMs: 30_000 });
  });

  test('follows a chosen policy', () => {
    assert.deepEqual(
      [1, 2, 3, 4].map((attempt) => pullBackoffMs(attempt, { initialMs: 100, maxMs: 500 })),
      [100, 200, 400, 500],
    );
  });
});

describe('what follows a transient pull failure within --image-pull-timeout', () => {
  const backoff = { initialMs: 1000, maxMs: 30_000 };

  test('a back-off that ends before the deadline is followed by another attempt', () => {
    assert.deepEqual(afterTransientFailure(1, 2500, backoff), { waitMs: 1000, afterWait: 'retry' });
    assert.deepEqual(afterTransientFailure(2, 2001, backoff), { waitMs: 2000, afterWait: 'retry' });
  });

  test('a back-off that reaches the deadline is the last wait, cut to what is left, and no attempt follows it', () => {
    assert.deepEqual(afterTransientFailure(2, 1500, backoff), { waitMs: 1500, afterWait: 'give-up' });
    assert.deepEqual(afterTransientFailure(2, 2000, backoff), { waitMs: 2000, afterWait: 'give-up' });
  });

  test('a budget already spent gives up at once, whatever the clock overshot', () => {
    assert.deepEqual(afterTransientFailure(1, 0, backoff), { waitMs: 0, afterWait: 'give-up' });
    assert.deepEqual(afterTransientFailure(3, -40, backoff), { waitMs: 0, afterWait: 'give-up' });
  });

  test('a timer that fires a millisecond early cannot buy one more attempt: the run of steps ends after the wait that reached the deadline', () => {
    // The loop of container-runtime.ts with a clock whose timers fire 1 ms
    // early and a registry that always fails at once, as in CI's failing run.
    const budget = 2500;
    let now = 0;
    let attempts = 0;
    for (;;) {
      attempts++;
      const next = afterTransientFailure(attempts, budget - now, backoff);
      now += Math.max(0, next.waitMs - 1);
      if (next.afterWait === 'give-up') break;
    }
    assert.equal(attempts, 2);
  });
});
