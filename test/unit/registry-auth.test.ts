// --image-pull-config (src/runtime/container/registry-auth.ts): a Docker
// config.json read as the kubelet reads it, and refused with a message that
// names the problem but never a secret.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { imageLocation, parseRegistryKey, RegistryAuth, RegistryAuthError } from '../../src/runtime/container/registry-auth.js';

const b64 = (text: string) => Buffer.from(text).toString('base64');
const parse = (config: unknown) => RegistryAuth.parse('config.json', JSON.stringify(config));
const SECRET = 's3cr3t-Pa55';

describe('registry credentials from a Docker config.json', () => {
  test('every spelling of Docker Hub in a key applies to Docker Hub images, with and without a registry in their name', () => {
    for (const key of ['docker.io', 'index.docker.io', 'https://index.docker.io/v1/', 'registry-1.docker.io', 'https://index.docker.io/v2/']) {
      const auth = parse({ auths: { [key]: { auth: b64(`hub:${SECRET}`) } } });
      for (const image of ['busybox', 'busybox:1.36', 'library/busybox', 'someone/app:v1', 'docker.io/someone/app', 'index.docker.io/library/busybox@sha256:abc']) {
        const found = auth.authFor(image);
        assert.equal(found?.username, 'hub', `${key} for ${image}`);
        assert.equal(found?.password, SECRET);
        assert.equal(auth.credentialsFor(image)?.registry, 'docker.io');
      }
      assert.equal(auth.authFor('quay.io/someone/app'), undefined, key);
    }
  });

  test('the AuthConfig names no server address, which containerd would parse as a URL and withhold the credentials from or fail on', () => {
    const auth = parse({ auths: { '127.0.0.1:5000': { username: 'u', password: 'p' }, 'docker.io': { username: 'h', password: 'p' } } });
    for (const image of ['127.0.0.1:5000/app', 'busybox']) assert.equal(auth.authFor(image)?.serverAddress, '', image);
  });

  test('a host with a port matches that host and port only; a scheme in the key is ignored', () => {
    const auth = parse({ auths: { 'http://registry.local:5000': { username: 'u', password: 'p' } } });
    assert.equal(auth.authFor('registry.local:5000/team/app:v2')?.username, 'u');
    assert.equal(auth.credentialsFor('registry.local:5000/app')?.registry, 'registry.local:5000');
    assert.equal(auth.authFor('registry.local/team/app'), undefined);
    assert.equal(auth.authFor('registry.local:5001/team/app'), undefined);
    assert.equal(auth.authFor('localhost:5000/app'), undefined);
  });

  test('"localhost" and hosts with a dot are registries; a plain first component is a Docker Hub user', () => {
    assert.deepEqual(imageLocation('localhost/app:1'), { host: 'localhost', path: 'app' });
    assert.deepEqual(imageLocation('localhost:5000/a/b:1'), { host: 'localhost:5000', path: 'a/b' });
    assert.deepEqual(imageLocation('ghcr.io/org/app@sha256:00'), { host: 'ghcr.io', path: 'org/app' });
    assert.deepEqual(imageLocation('team/app:latest'), { host: 'docker.io', path: 'team/app' });
    assert.deepEqual(imageLocation('busybox'), { host: 'docker.io', path: 'library/busybox' });
  });

  test('a key with a repository path applies to that path and below, and wins over the whole registry', () => {
    const auth = parse({
      auths: {
        'quay.io': { username: 'everyone', password: 'a' },
        'quay.io/team': { username: 'team', password: 'b' },
      },
    });
    assert.equal(auth.authFor('quay.io/team/app:1')?.username, 'team');
    assert.equal(auth.authFor('quay.io/team')?.username, 'team');
    assert.equal(auth.authFor('quay.io/teammate/app')?.username, 'everyone');
    assert.equal(auth.authFor('quay.io/other/app')?.username, 'everyone');
    assert.deepEqual(parseRegistryKey('https://Quay.io/team/'), { host: 'quay.io', path: 'team' });
  });

  test('"auth" is decoded into username and password and wins over them; tokens are passed as given', () => {
    const auth = parse({
      auths: {
        'a.example': { auth: b64(`alice:${SECRET}:with:colons`), username: 'ignored', password: 'ignored' },
        'b.example': { identitytoken: 'id-token' },
        'c.example': { registrytoken: 'bearer-token' },
      },
    });
    assert.deepEqual(auth.authFor('a.example/x'), {
      username: 'alice',
      password: `${SECRET}:with:colons`,
      auth: '',
      serverAddress: '',
      identityToken: '',
      registryToken: '',
    });
    assert.equal(auth.authFor('b.example/x')?.identityToken, 'id-token');
    assert.equal(auth.authFor('c.example/x')?.registryToken, 'bearer-token');
  });

  test('an unusable file is refused naming the file, the entry and the problem, and never a secret', () => {
    const cases: [string, RegExp][] = [
      [`{"auths": {"r.example": {"auth": "${SECRET}"`, /is not valid JSON/],
      [`[]`, /is not a JSON object/],
      [`{"credsStore": "desktop"}`, /has no "auths" \(credential helpers/],
      [`{"auths": []}`, /"auths" is not an object/],
      [`{"auths": {"r.example": "${SECRET}"}}`, /"auths" entry "r.example" is not an object/],
      [`{"auths": {"r.example": {"auth": "${b64(SECRET)}"}}}`, /"auths" entry "r.example": "auth" is not base64 of "username:password"/],
      [`{"auths": {"r.example": {"auth": "!!${SECRET}"}}}`, /"auth" is not base64/],
      [`{"auths": {"r.example": {"password": "${SECRET}"}}}`, /"auths" entry "r.example" has no credentials/],
      [`{"auths": {"r.example": {"username": 7, "password": "${SECRET}"}}}`, /"username" is not a string/],
      [`{"auths": {"": {"username": "u", "password": "${SECRET}"}}}`, /entry "" does not name a registry/],
    ];
    for (const [text, expected] of cases) {
      assert.throws(
        () => RegistryAuth.parse('/etc/te/config.json', text),
        (error: unknown) => {
          assert.ok(error instanceof RegistryAuthError, text);
          assert.match(error.message, /^image pull config \/etc\/te\/config\.json: /);
          assert.match(error.message, expected);
          assert.ok(!error.message.includes(SECRET) && !error.message.includes(b64(SECRET)), error.message);
          return true;
        },
      );
    }
  });

  test('a missing file is refused naming it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'te-auth-'));
    try {
      assert.throws(() => RegistryAuth.load(join(dir, 'absent.json')), /image pull config .*absent\.json: no such file/);
      writeFileSync(join(dir, 'ok.json'), JSON.stringify({ auths: { 'r.example': { auth: b64('u:p') } } }));
      assert.equal(RegistryAuth.load(join(dir, 'ok.json')).authFor('r.example/app')?.username, 'u');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
