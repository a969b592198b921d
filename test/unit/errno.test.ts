// Reading the code of a caught error (src/util/errno.ts): Node's system errors carry a
// string code; anything else (no code, a numeric one, not an object) has none.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { errnoOf, errnoText, isErrno } from '../../src/util/errno.js';

/** The error a real failed system call throws. */
function systemError(): unknown {
  try {
    readFileSync('/nonexistent/te-errno-test');
  } catch (error) {
    return error;
  }
  throw new Error('reading a missing file did not fail');
}

describe('errno of a caught error', () => {
  test("a system call's error gives its code", () => {
    const error = systemError();
    assert.equal(errnoOf(error), 'ENOENT');
    assert.equal(isErrno(error, 'EACCES', 'ENOENT'), true);
    assert.equal(isErrno(error, 'EACCES'), false);
    assert.equal(errnoText(error), 'ENOENT');
  });

  test('errors without a string code, and values that are not errors, have none', () => {
    for (const error of [new Error('plain'), Object.assign(new Error('grpc'), { code: 14 }), undefined, null, 'ENOENT', 42]) {
      assert.equal(errnoOf(error), undefined, String(error));
      assert.equal(isErrno(error, 'ENOENT'), false);
    }
    assert.equal(errnoText(new Error('plain')), 'Error: plain', 'for messages, the error itself');
  });
});
