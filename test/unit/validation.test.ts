// Admission checks (src/model/validation.ts): what is refused, and that the
// message names the field and what to do.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { TaskError } from '../../src/errors.js';
import type { ProcessSpec, TaskSpec } from '../../src/model/task.js';
import { canonicalSpec, LIMITS, MAX_NAME_LENGTH, quote, validateName, validateSpec } from '../../src/model/validation.js';

/** An InvalidArgument TaskError whose message matches `message`. */
const invalid = (message: RegExp) => (error: unknown) => {
  assert.ok(error instanceof TaskError, `a TaskError, not ${String(error)}`);
  assert.equal(error.kind, 'InvalidArgument');
  assert.match(error.message, message);
  return true;
};

const processTask = (overrides: Partial<ProcessSpec> = {}): TaskSpec => ({ process: { command: ['true'], args: [], env: [], ...overrides } });

describe('names', () => {
  test('DNS-1123 subdomains are accepted, up to 253 characters', () => {
    for (const name of ['a', 'my-task-1', 'a.b.c', '0', 'x'.repeat(MAX_NAME_LENGTH)]) validateName(name);
  });

  test('anything else is refused with a message that names the field and the rule', () => {
    assert.throws(() => validateName(''), invalid(/^name is required$/));
    assert.throws(() => validateName('x'.repeat(254), 'task.name'), invalid(/^task\.name is 254 characters long; at most 253/));
    for (const name of ['Upper', '-a', 'a-', 'a..b', '../etc', 'a/b', '.', 'sp ace', 'nul\0', 'é']) {
      assert.throws(() => validateName(name), invalid(/is invalid: use lowercase letters.*DNS-1123/), JSON.stringify(name));
    }
  });

  test('a quoted value is cut short, so a huge input cannot make a huge message', () => {
    assert.equal(quote('abc'), '"abc"');
    const long = quote('y'.repeat(10_000));
    assert.ok(long.length < 120, long);
    assert.match(long, /… \(10000 characters\)$/);
  });
});

describe('specs', () => {
  test('exactly one of process or container', () => {
    assert.throws(() => validateSpec(undefined, 'task.spec'), invalid(/^task\.spec must set exactly one of process or container$/));
    assert.throws(() => validateSpec({}), invalid(/exactly one/));
    const both: TaskSpec = { ...processTask(), container: { image: 'busybox', command: [], args: [], env: [], volumeMounts: [] } };
    assert.throws(() => validateSpec(both), invalid(/sets both process and container/));
    validateSpec(processTask());
  });

  test('each bad field is named by its path', () => {
    const cases: [TaskSpec, RegExp][] = [
      [processTask({ command: [], args: [] }), /spec\.process\.command is empty/],
      [processTask({ command: [], args: [''] }), /spec\.process\.args\[0\] is used as the program/],
      [processTask({ command: ['', 'x'] }), /spec\.process\.command\[0\] \(the program\) must not be empty/],
      [processTask({ args: ['ok', 'a\0b'] }), /spec\.process\.args\[1\] contains a NUL byte/],
      [processTask({ env: [{ name: 'A=B', value: '' }] }), /spec\.process\.env\[0\]\.name "A=B" must not contain '='/],
      [processTask({ env: [{ name: '', value: 'x' }] }), /spec\.process\.env\[0\]\.name is empty/],
      [processTask({ workingDir: 'relative' }), /spec\.process\.workingDir "relative" must be an absolute path/],
      [processTask({ timeoutSeconds: -1 }), /spec\.process\.timeoutSeconds must be a whole number of seconds from 0/],
      [processTask({ timeoutSeconds: 1.5 }), /timeoutSeconds must be a whole number/],
      [processTask({ user: 'bad user' }), /spec\.process\.user "bad user" is neither a numeric id nor a valid user\/group name/],
      [processTask({ user: '4294967295' }), /spec\.process\.user "4294967295" is above 4294967294, the largest numeric id/],
      [processTask({ group: '99999999999' }), /spec\.process\.group "99999999999" is above 4294967294/],
      [{ ...processTask(), stopSignal: 'SIGNOPE' }, /spec\.stopSignal "SIGNOPE" is not a signal name/],
      [{ ...processTask(), maxRestarts: 1001 }, /spec\.maxRestarts must be a whole number from 0 to 1000; got 1001/],
      [{ ...processTask(), resources: { memoryBytes: 1024 } }, /spec\.resources\.memoryBytes must be a whole number from 1048576/],
      [{ ...processTask(), logs: { maxFiles: 0 } }, /spec\.logs\.maxFiles must be a whole number from 1 to 1000; got 0/],
      [
        { container: { image: 'busybox', command: [], args: [], env: [], volumeMounts: [{ name: 'data', mountPath: 'data', readOnly: false }] } },
        /spec\.container\.volumeMounts\[0\]\.mountPath "data" must be an absolute path/,
      ],
      [{ container: { image: ' ', command: [], args: [], env: [], volumeMounts: [] } }, /spec\.container\.image is required/],
    ];
    for (const [spec, message] of cases) assert.throws(() => validateSpec(spec), invalid(message), String(message));
  });

  test('sizes are bounded: one string, the number of arguments, and all strings together', () => {
    validateSpec(processTask({ args: ['x'.repeat(LIMITS.stringBytes)] }));
    assert.throws(() => validateSpec(processTask({ args: ['x'.repeat(LIMITS.stringBytes + 1)] })), invalid(/args\[0\] is 131073 bytes long/));
    // Bytes, not characters: 'é' is two bytes in UTF-8.
    assert.throws(() => validateSpec(processTask({ args: ['é'.repeat(LIMITS.stringBytes / 2 + 1)] })), invalid(/bytes long/));
    assert.throws(
      () => validateSpec(processTask({ args: Array.from({ length: LIMITS.argvEntries }, () => 'x') })),
      invalid(/args has 4096 entries; command and args together allow at most 4096/),
    );
    const nine = Array.from({ length: 9 }, () => 'x'.repeat(LIMITS.stringBytes - 1));
    assert.throws(() => validateSpec(processTask({ args: nine })), invalid(/strings add up to more than 1048576 bytes \(at spec\.process\.args\[8\]\)/));
  });
});

describe('canonical specs', () => {
  test('field order and absent fields do not matter; values do', () => {
    const a: TaskSpec = { process: { command: ['a'], args: [], env: [] }, maxRestarts: 1 };
    const b: TaskSpec = { maxRestarts: 1, stopSignal: undefined, process: { env: [], args: [], command: ['a'] } };
    assert.equal(canonicalSpec(a), canonicalSpec(b));
    assert.notEqual(canonicalSpec(a), canonicalSpec({ ...a, maxRestarts: 2 }));
    assert.notEqual(canonicalSpec(a), canonicalSpec({ process: { command: ['a'], args: [''], env: [] }, maxRestarts: 1 }));
  });
});
