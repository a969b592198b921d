// Seccomp profile files for process and sidecar tasks (src/model/seccomp-profile.ts,
// src/runtime/shim/seccomp-profiles.ts): the OCI/Docker JSON subset that is
// compiled into the supervisor's options, what is refused and how, and where
// profile files may be read from.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { TaskError } from '../../src/errors.js';
import { compileSeccompProfile, seccompProfileArgs } from '../../src/model/seccomp-profile.js';
import { loadSeccompProfile } from '../../src/runtime/shim/seccomp-profiles.js';

const FIELD = 'task.spec.securityContext.seccompProfile.localhostProfile';

const invalid = (message: RegExp) => (error: unknown) => {
  assert.ok(error instanceof TaskError, `a TaskError, not ${String(error)}`);
  assert.equal(error.kind, 'InvalidArgument');
  assert.match(error.message, message);
  return true;
};

const compile = (profile: unknown) => compileSeccompProfile(JSON.stringify(profile), FIELD, '/p.json');

describe('seccomp profile files', () => {
  test('a profile compiles to one rule per action, skipping rules with the default action, with errnoRet defaulting to EPERM', () => {
    const profile = compile({
      defaultAction: 'SCMP_ACT_ERRNO',
      defaultErrnoRet: 38,
      architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86'],
      syscalls: [
        { names: ['read', 'write'], action: 'SCMP_ACT_ALLOW', comment: 'io' },
        { names: ['mkdir'], action: 'SCMP_ACT_ERRNO' },
        { names: ['rmdir'], action: 'SCMP_ACT_ERRNO', errnoRet: 13, args: [] },
        { names: ['exit'], action: 'SCMP_ACT_ALLOW' },
        { names: ['uname'], action: 'SCMP_ACT_ERRNO', errnoRet: 38 },
        { names: ['ptrace'], action: 'SCMP_ACT_KILL' },
        { names: ['reboot'], action: 'SCMP_ACT_KILL_PROCESS' },
        { names: ['swapon'], action: 'SCMP_ACT_TRAP' },
        { names: ['acct'], action: 'SCMP_ACT_LOG' },
      ],
    });
    assert.deepEqual(seccompProfileArgs(profile), [
      '--seccomp-default', 'errno=38',
      '--seccomp-rule', 'allow:read,write,exit',
      '--seccomp-rule', 'errno=1:mkdir',
      '--seccomp-rule', 'errno=13:rmdir',
      '--seccomp-rule', 'kill_thread:ptrace',
      '--seccomp-rule', 'kill_process:reboot',
      '--seccomp-rule', 'trap:swapon',
      '--seccomp-rule', 'log:acct',
    ]);
  });

  test('bad profiles are INVALID_ARGUMENT naming the field, the file, the place and the problem', () => {
    assert.throws(() => compileSeccompProfileText('{"defaultAction": '), invalid(/^task\.spec\.securityContext\.seccompProfile\.localhostProfile: seccomp profile \/p\.json: is not valid JSON/));
    assert.throws(() => compile([]), invalid(/must be a JSON object/));
    assert.throws(() => compile({ syscalls: [] }), invalid(/defaultAction: missing is not a supported action; use one of SCMP_ACT_ALLOW, /));
    assert.throws(() => compile({ defaultAction: 'SCMP_ACT_NOTIFY' }), invalid(/defaultAction: "SCMP_ACT_NOTIFY" is not a supported action/));
    assert.throws(
      () => compile({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mkdir'], action: 'SCMP_ACT_DENY' }] }),
      invalid(/syscalls\[0\] \(mkdir\)\.action: "SCMP_ACT_DENY" is not a supported action/),
    );
    assert.throws(
      () => compile({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ERRNO' }, { names: ['Mkdir!'], action: 'SCMP_ACT_ERRNO' }] }),
      invalid(/syscalls\[1\]\.names\[0\]: "Mkdir!" is not a syscall name/),
    );
    assert.throws(
      () => compile({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['personality'], action: 'SCMP_ACT_ERRNO', args: [{ index: 0, value: 8, op: 'SCMP_CMP_EQ' }] }] }),
      invalid(/syscalls\[0\] \(personality\): has "args" conditions, which process and sidecar tasks do not support/),
    );
    assert.throws(
      () => compile({ defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['bpf'], action: 'SCMP_ACT_ALLOW', includes: { caps: ['CAP_SYS_ADMIN'] } }] }),
      invalid(/syscalls\[0\] \(bpf\)\.includes: Docker's conditional rules are not supported/),
    );
    assert.throws(
      () => compile({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mkdir'], action: 'SCMP_ACT_ERRNO', errnoRet: 5000 }] }),
      invalid(/syscalls\[0\] \(mkdir\)\.errnoRet: must be an errno from 0 to 4095; got 5000/),
    );
    assert.throws(
      () => compile({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mkdir'], action: 'SCMP_ACT_ERRNO' }, { names: ['mkdir'], action: 'SCMP_ACT_KILL' }] }),
      invalid(/syscalls\[1\] \(mkdir\): mkdir already has another action in syscalls\[0\]/),
    );
    assert.throws(() => compile({ defaultAction: 'SCMP_ACT_ALLOW', defaultErrnoRet: 1 }), invalid(/defaultErrnoRet: is only for action SCMP_ACT_ERRNO/));
    assert.throws(() => compile({ defaultAction: 'SCMP_ACT_ALLOW', seccomp: true }), invalid(/"seccomp": is not a field of a seccomp profile/));
    assert.throws(() => compile({ defaultAction: 'SCMP_ACT_ALLOW', listenerPath: '/run/l.sock' }), invalid(/seccomp notify .* is not supported/));
  });

  test('profiles are read from under the profile root only, a relative path from the root, and an unreadable one says why', () => {
    const dir = mkdtempSync(join(tmpdir(), 'te-seccomp-'));
    const root = join(dir, 'profiles');
    mkdirSync(join(root, 'team'), { recursive: true });
    writeFileSync(join(root, 'team', 'ok.json'), JSON.stringify({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mkdir'], action: 'SCMP_ACT_ERRNO' }] }));
    writeFileSync(join(dir, 'outside.json'), '{"defaultAction": "SCMP_ACT_ALLOW"}');
    symlinkSync(join(dir, 'outside.json'), join(root, 'link.json'));
    assert.deepEqual(loadSeccompProfile(root, 'team/ok.json', FIELD).rules, [{ action: 'errno=1', names: ['mkdir'] }]);
    assert.deepEqual(loadSeccompProfile(root, join(root, 'team/ok.json'), FIELD).defaultAction, 'allow');
    assert.throws(() => loadSeccompProfile(root, '../outside.json', FIELD), invalid(/"\.\.\/outside\.json" is outside the seccomp profile root .*--seccomp-profile-root/));
    assert.throws(() => loadSeccompProfile(root, join(dir, 'outside.json'), FIELD), invalid(/is outside the seccomp profile root/));
    assert.throws(() => loadSeccompProfile(root, 'link.json', FIELD), invalid(/link\.json is a link to .*outside\.json, outside the profile root/));
    assert.throws(() => loadSeccompProfile(root, 'missing.json', FIELD), invalid(/cannot read seccomp profile .*missing\.json: no such file/));
    assert.throws(() => loadSeccompProfile(root, 'team', FIELD), invalid(/team is not a regular file/));
  });
});

function compileSeccompProfileText(text: string) {
  return compileSeccompProfile(text, FIELD, '/p.json');
}
