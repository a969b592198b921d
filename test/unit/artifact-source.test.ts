// Artifact admission (src/artifacts/source.ts through validateSpec): what is
// refused, with a message naming the field, and the defaults of what passes.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { resolveArtifact } from '../../src/artifacts/source.js';
import { TaskError } from '../../src/errors.js';
import type { Artifact, TaskSpec } from '../../src/model/task.js';
import { validateSpec } from '../../src/model/validation.js';
import { artifactMounts } from '../../src/runtime/container/mapping.js';

const invalid = (message: RegExp) => (error: unknown) => {
  assert.ok(error instanceof TaskError, `a TaskError, not ${String(error)}`);
  assert.equal(error.kind, 'InvalidArgument');
  assert.match(error.message, message);
  return true;
};

const withArtifacts = (...artifacts: Artifact[]): TaskSpec => ({ process: { command: ['true'], args: [], env: [] }, artifacts });
const SHA256 = `sha256:${'a'.repeat(64)}`;

describe('artifact sources', () => {
  test('https, http, file and git sources are accepted', () => {
    validateSpec(
      withArtifacts(
        { source: 'https://example.com/script.sh' },
        { source: 'http://example.com:8080/a/b.tar.gz', checksum: SHA256 },
        { source: 'file:///opt/tools/tool.zip' },
        { source: 'git::https://example.com/org/repo.git?ref=v1.2' },
        { source: 'git::file:///srv/repo' },
      ),
    );
  });

  test('anything else is INVALID_ARGUMENT naming the artifact and field', () => {
    for (const source of ['ftp://example.com/x', 's3::bucket/key', 'example.com/script.sh', '', 'git::example.com/repo', 'data:text/plain,hi']) {
      assert.throws(
        () => validateSpec(withArtifacts({ source: 'https://example.com/ok.sh' }, { source }), 'spec'),
        invalid(/^spec\.artifacts\[1\]\.source/),
        source,
      );
    }
  });

  test('credentials in the URL are refused with a pointer to headers', () => {
    assert.throws(() => validateSpec(withArtifacts({ source: 'https://u:p@example.com/x.sh' })), invalid(/headers/));
  });

  test('a git ref that could be an option is refused', () => {
    assert.throws(() => validateSpec(withArtifacts({ source: 'git::https://example.com/r.git?ref=--upload-pack=x' })), invalid(/\.source has ref/));
  });

  test('file mode needs a file name at the end of the path', () => {
    assert.throws(() => validateSpec(withArtifacts({ source: 'https://example.com/' })), invalid(/no file name/));
  });
});

describe('artifact checksums', () => {
  test('sha256 and sha512 with the right number of hex digits are accepted, in any case', () => {
    validateSpec(withArtifacts({ source: 'https://e.x/a', checksum: `sha256:${'AB'.repeat(32)}` }, { source: 'https://e.x/b', checksum: `sha512:${'0'.repeat(128)}` }));
  });

  test('other forms are refused', () => {
    for (const checksum of ['md5:abc', `sha256:${'a'.repeat(63)}`, `sha512:${'a'.repeat(64)}`, 'sha256:xyz', SHA256.replace(':', '=')]) {
      assert.throws(() => validateSpec(withArtifacts({ source: 'https://e.x/a', checksum }), 'spec'), invalid(/^spec\.artifacts\[0\]\.checksum/), checksum);
    }
  });

  test('git sources take no checksum and no mode', () => {
    assert.throws(() => validateSpec(withArtifacts({ source: 'git::https://e.x/r.git', checksum: SHA256 })), invalid(/checksum is not allowed for a git source/));
    assert.throws(() => validateSpec(withArtifacts({ source: 'git::https://e.x/r.git', mode: 'archive' })), invalid(/mode does not apply/));
  });
});

describe('artifact destinations', () => {
  test('default "artifacts"; normalised', () => {
    assert.equal(resolveArtifact({ source: 'https://e.x/a.sh' }, 'a').destination, 'artifacts');
    assert.equal(resolveArtifact({ source: 'https://e.x/a.sh', destination: 'tools//bin/./' }, 'a').destination, 'tools/bin');
  });

  test('a destination that escapes the task directory or takes an executor file is refused', () => {
    const cases: [string, RegExp][] = [
      ['/etc', /must be relative/],
      ['../x', /must not contain "\.\."/],
      ['a/../../x', /must not contain "\.\."/],
      ['.', /not the task directory itself/],
      ['./', /not the task directory itself/],
      ['logs', /executor keeps/],
      ['logs/x', /executor keeps/],
      ['task.json', /executor keeps/],
      ['.artifacts-staging', /executor keeps/],
    ];
    for (const [destination, message] of cases) {
      assert.throws(() => validateSpec(withArtifacts({ source: 'https://e.x/a', destination }), 'spec'), invalid(new RegExp(`^spec\\.artifacts\\[0\\]\\.destination.*${message.source}`)), destination);
    }
  });
});

describe('artifact modes and headers', () => {
  test('archive mode is detected from .tar, .tar.gz, .tgz and .zip; file otherwise; a stated mode wins', () => {
    for (const name of ['a.tar', 'a.tar.gz', 'a.TGZ', 'a.zip']) assert.equal(resolveArtifact({ source: `https://e.x/${name}` }, 'a').mode, 'archive', name);
    const file = resolveArtifact({ source: 'https://e.x/dir/script.sh?x=1' }, 'a');
    assert.equal(file.mode, 'file');
    assert.equal(file.fileName, 'script.sh');
    assert.equal(resolveArtifact({ source: 'https://e.x/download?id=3', mode: 'archive' }, 'a').mode, 'archive');
    assert.equal(resolveArtifact({ source: 'https://e.x/x.tgz', mode: 'file' }, 'a').fileName, 'x.tgz');
  });

  test('an unknown mode value is refused', () => {
    assert.throws(() => validateSpec(withArtifacts({ source: 'https://e.x/a', mode: 'unknown(7)' as 'file' })), invalid(/\.mode has an unknown value/));
  });

  test('headers: only for http(s), names are tokens, values without CR/LF', () => {
    validateSpec(withArtifacts({ source: 'https://e.x/a', headers: { Authorization: 'Bearer x' } }));
    assert.throws(() => validateSpec(withArtifacts({ source: 'file:///a', headers: { A: 'b' } })), invalid(/headers are only sent to http/));
    assert.throws(() => validateSpec(withArtifacts({ source: 'https://e.x/a', headers: { 'Bad Name': 'x' } })), invalid(/not an HTTP header name/));
    assert.throws(() => validateSpec(withArtifacts({ source: 'https://e.x/a', headers: { A: 'x\r\nInjected: y' } })), invalid(/contains a NUL, CR or LF/));
  });

  test('at most 64 artifacts', () => {
    const many = Array.from({ length: 65 }, (_, i) => ({ source: `https://e.x/${i}.sh` }));
    assert.throws(() => validateSpec(withArtifacts(...many), 'spec'), invalid(/^spec\.artifacts has 65 entries; at most 64/));
  });
});

describe('artifacts of container tasks', () => {
  test('each destination\'s first component is mounted read-only at the same name below the container root, once', () => {
    assert.deepEqual(
      artifactMounts([{ source: 'https://e.x/a.sh' }, { source: 'https://e.x/b.tgz', destination: 'artifacts/tools' }, { source: 'git::https://e.x/r.git', destination: 'src/r' }], '/data/t'),
      [
        { containerPath: '/artifacts', hostPath: '/data/t/artifacts', readonly: true },
        { containerPath: '/src', hostPath: '/data/t/src', readonly: true },
      ],
    );
    assert.deepEqual(artifactMounts(undefined, '/data/t'), []);
  });
});
