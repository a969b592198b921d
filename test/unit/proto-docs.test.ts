// The proto comments are the documentation every generated client carries: they
// must state the rules the validation code enforces. Parsed from the .proto text.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { ARTIFACT_LIMITS } from '../../src/artifacts/source.js';
import { LIMITS, MAX_NAME_LENGTH, NAME_PATTERN } from '../../src/model/validation.js';
import { ROOT } from '../support/subprocess.js';

const TASK_PROTO = readFileSync(join(ROOT, 'proto/taskexecutor/v1/task.proto'), 'utf8');

/** The comment lines right above offset `end` of the proto text, without the slashes. */
function commentBefore(end: number, what: string): string {
  const lines = TASK_PROTO.slice(0, end).split('\n');
  const comment: string[] = [];
  for (let i = lines.length - 1; i >= 0; i--) {
    const match = /^\s*\/\/ ?(.*)$/.exec(lines[i]!);
    if (match) comment.unshift(match[1]!);
    else if (comment.length > 0 || lines[i]!.trim() !== '') break;
  }
  assert.ok(comment.length > 0, `no comment above ${what}`);
  return comment.join('\n');
}

/** The comment above `declaration` inside `message <message> {`, or above the message itself. */
function commentAbove(message: string, declaration?: string): string {
  const start = TASK_PROTO.indexOf(`message ${message} {`);
  assert.ok(start >= 0, `no message ${message}`);
  if (declaration === undefined) return commentBefore(start, message);
  const at = TASK_PROTO.indexOf(declaration, start);
  assert.ok(at >= 0, `no ${declaration} in ${message}`);
  return commentBefore(at, `${message}: ${declaration}`);
}

describe('the proto comments state the validation rules', () => {
  const nameComment = commentAbove('Task', 'string name = 1;');

  test('Task.name gives the longest name the validation accepts', () => {
    const stated = /1 to (\d+) characters/.exec(nameComment);
    assert.ok(stated, `no "1 to N characters" in:\n${nameComment}`);
    assert.equal(Number(stated[1]), MAX_NAME_LENGTH);
  });

  test('Task.name gives the pattern the validation applies', () => {
    const stated = /Pattern: (\S+)/.exec(nameComment);
    assert.ok(stated, `no "Pattern: ..." in:\n${nameComment}`);
    assert.equal(stated[1], NAME_PATTERN.source);
    assert.match(nameComment, /DNS-1123 subdomain/);
  });

  test('VolumeMount.name refers to the same rule and length', () => {
    const comment = commentAbove('VolumeMount', 'string name = 1;');
    assert.match(comment, /same rule\s+as Task\.name/);
    assert.match(comment, new RegExp(`at most ${MAX_NAME_LENGTH} characters`));
  });

  test("the spec limits in the comments are the validation's", () => {
    const stated = (message: string, declaration: string | undefined, value: number) =>
      assert.match(commentAbove(message, declaration), new RegExp(`\\b${value}\\b`), `${message}: ${declaration} should state ${value}`);
    stated('TaskSpec', undefined, LIMITS.stringBytes);
    stated('TaskSpec', undefined, LIMITS.totalBytes);
    stated('ProcessSpec', 'repeated string command = 1;', LIMITS.argvEntries);
    stated('ProcessSpec', 'repeated EnvVar env = 3;', LIMITS.envEntries);
    stated('ProcessSpec', 'optional int64 timeout_seconds = 5;', LIMITS.timeoutSeconds);
    stated('ContainerSpec', 'repeated VolumeMount volume_mounts = 5;', LIMITS.volumeMounts);
    stated('TaskSpec', 'repeated Artifact artifacts = 10;', ARTIFACT_LIMITS.artifacts);
    stated('Artifact', 'string source = 1;', ARTIFACT_LIMITS.sourceBytes);
    stated('Artifact', 'map<string, string> headers = 5;', ARTIFACT_LIMITS.headers);
    stated('Artifact', 'map<string, string> headers = 5;', ARTIFACT_LIMITS.headerBytes);
    stated('Artifact', 'string destination = 2;', ARTIFACT_LIMITS.destinationBytes);
  });
});
