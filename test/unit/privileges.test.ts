// Least privilege (src/model/privileges.ts, src/runtime/container/mapping.ts,
// src/runtime/shim/task-privileges.ts): which security contexts are refused and
// how, what a process task runs with over the executor's defaults, the options
// the supervisor gets, and the CRI security context of a container task.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { SecurityProfile_ProfileType } from '../../gen/cri/runtime/v1/api.js';
import { TaskError } from '../../src/errors.js';
import { DEFAULT_CAPABILITIES, DEFAULT_PRIVILEGES, describeDefaults, processPrivileges } from '../../src/model/privileges.js';
import type { SecurityContext, TaskSpec } from '../../src/model/task.js';
import { validateSpec } from '../../src/model/validation.js';
import { containerConfig, containerSecurity, runLabels } from '../../src/runtime/container/mapping.js';
import { TaskPrivileges } from '../../src/runtime/shim/task-privileges.js';

const invalid = (message: RegExp) => (error: unknown) => {
  assert.ok(error instanceof TaskError, `a TaskError, not ${String(error)}`);
  assert.equal(error.kind, 'InvalidArgument');
  assert.match(error.message, message);
  return true;
};

const processSpec = (securityContext: SecurityContext): TaskSpec => ({ process: { command: ['true'], args: [], env: [] }, securityContext });
const containerSpec = (securityContext: SecurityContext): TaskSpec => ({
  container: { image: 'busybox', command: [], args: [], env: [], volumeMounts: [] },
  securityContext,
});

describe('security context validation', () => {
  test('capability names in any case, with or without CAP_, and ALL are accepted', () => {
    validateSpec(processSpec({ capabilities: { add: ['net_admin', 'CAP_SYS_TIME', 'ALL'], drop: ['all', 'Chown'] } }));
  });

  test('an unknown capability is INVALID_ARGUMENT naming the list and the index', () => {
    assert.throws(
      () => validateSpec(processSpec({ capabilities: { add: ['NET_ADMIN', 'NET_ADMINN'], drop: [] } })),
      invalid(/^spec\.securityContext\.capabilities\.add\[1\] "NET_ADMINN" is not a capability: use a kernel name without "CAP_"/),
    );
    assert.throws(() => validateSpec(processSpec({ capabilities: { add: [], drop: [''] } })), invalid(/capabilities\.drop\[0\] "" is not a capability/));
    assert.throws(
      () => validateSpec(processSpec({ capabilities: { add: Array(65).fill('KILL'), drop: [] } })),
      invalid(/capabilities\.add has 65 entries; at most 64/),
    );
  });

  test('rlimits: unknown names, twice the same name, bad values and soft above hard are refused', () => {
    validateSpec(processSpec({ rlimits: [{ name: 'nofile', soft: 1, hard: -1 }, { name: 'core', soft: -1, hard: -1 }] }));
    assert.throws(
      () => validateSpec(processSpec({ rlimits: [{ name: 'files', soft: 1, hard: 2 }] })),
      invalid(/^spec\.securityContext\.rlimits\[0\]\.name "files" is not an rlimit: use one of as, core, .*nofile/),
    );
    assert.throws(
      () => validateSpec(processSpec({ rlimits: [{ name: 'nproc', soft: 1, hard: 2 }, { name: 'nproc', soft: 1, hard: 2 }] })),
      invalid(/rlimits\[1\]\.name nproc is given twice/),
    );
    assert.throws(() => validateSpec(processSpec({ rlimits: [{ name: 'core', soft: -2, hard: 0 }] })), invalid(/rlimits\[0\]\.soft must be -1 \(unlimited\) or/));
    assert.throws(() => validateSpec(processSpec({ rlimits: [{ name: 'core', soft: 0, hard: 1.5 }] })), invalid(/rlimits\[0\]\.hard must be/));
    assert.throws(() => validateSpec(processSpec({ rlimits: [{ name: 'core', soft: 5, hard: 4 }] })), invalid(/rlimits\[0\] \(core\): soft 5 is above hard 4/));
    assert.throws(() => validateSpec(processSpec({ rlimits: [{ name: 'core', soft: -1, hard: 4 }] })), invalid(/soft -1 is above hard 4/));
  });

  test('container tasks cannot have rlimits: the CRI has none', () => {
    assert.throws(
      () => validateSpec(containerSpec({ rlimits: [{ name: 'nofile', soft: 1, hard: 2 }] })),
      invalid(/^spec\.securityContext\.rlimits: container tasks cannot have rlimits \(the CRI has no field for them/),
    );
  });

  test('a Localhost seccomp profile needs a path (absolute for container tasks, also relative for process tasks); a path needs that type', () => {
    validateSpec(containerSpec({ seccompProfile: { type: 'Localhost', localhostProfile: '/etc/seccomp/p.json' } }));
    validateSpec(processSpec({ seccompProfile: { type: 'Localhost', localhostProfile: 'p.json' } }));
    validateSpec(processSpec({ seccompProfile: { type: 'Localhost', localhostProfile: '/var/lib/task-executor/seccomp/p.json' } }));
    assert.throws(
      () => validateSpec(processSpec({ seccompProfile: { type: 'Localhost', localhostProfile: '' } })),
      invalid(/seccompProfile\.localhostProfile is required with SECCOMP_PROFILE_TYPE_LOCALHOST/),
    );
    assert.throws(
      () => validateSpec(containerSpec({ seccompProfile: { type: 'Localhost', localhostProfile: 'p.json' } })),
      invalid(/seccompProfile\.localhostProfile must be the absolute path/),
    );
    assert.throws(
      () => validateSpec(processSpec({ seccompProfile: { type: 'RuntimeDefault', localhostProfile: '/p.json' } })),
      invalid(/localhostProfile is only for type SECCOMP_PROFILE_TYPE_LOCALHOST/),
    );
  });
});

describe('what a process task runs with', () => {
  test("by default: Docker's capability set, the default profile, no no_new_privs, inherited rlimits", () => {
    assert.deepEqual(processPrivileges(undefined, DEFAULT_PRIVILEGES), {
      capabilities: [...DEFAULT_CAPABILITIES].sort((a, b) => order(a) - order(b)),
      noNewPrivileges: false,
      seccomp: 'default',
      rlimits: [],
    });
  });

  test("add and drop in containerd's order: ALL, then names; a name in both is dropped", () => {
    const kept = (add: string[], drop: string[]) => processPrivileges({ capabilities: { add, drop } }, DEFAULT_PRIVILEGES).capabilities;
    assert.deepEqual(kept(['NET_BIND_SERVICE'], ['ALL']), ['NET_BIND_SERVICE']);
    assert.deepEqual(kept(['cap_net_admin'], ['CHOWN', 'NET_ADMIN', ...DEFAULT_CAPABILITIES.filter((c) => c !== 'KILL')]), ['KILL']);
    assert.equal(kept(['ALL'], ['SYS_ADMIN'])?.includes('SYS_ADMIN'), false);
    assert.equal(kept(['ALL'], ['SYS_ADMIN'])?.length, 40);
  });

  test('--task-capabilities all leaves capabilities alone unless the task adds or drops; --task-seccomp unconfined loads no filter', () => {
    const original = { capabilities: 'all', seccomp: 'unconfined' } as const;
    assert.deepEqual(processPrivileges(undefined, original), { noNewPrivileges: false, seccomp: 'unconfined', rlimits: [] });
    assert.equal(processPrivileges({ capabilities: { add: [], drop: ['SYS_ADMIN'] } }, original).capabilities?.length, 40);
    assert.equal(processPrivileges({ seccompProfile: { type: 'RuntimeDefault' } }, original).seccomp, 'default');
  });

  test('the start-up log states the defaults', () => {
    assert.match(describeDefaults(DEFAULT_PRIVILEGES), /root process tasks keep only CHOWN,DAC_OVERRIDE,.*SETFCAP; non-root tasks none; the default seccomp profile/);
    assert.match(describeDefaults({ capabilities: 'all', seccomp: 'unconfined' }), /--task-capabilities all.*--task-seccomp unconfined/);
  });

  test('the supervisor gets options for what it can apply, and warnings for what it cannot', () => {
    const features = { capabilities: true, seccomp: true, seccompProfiles: true };
    const ctx: SecurityContext = { noNewPrivileges: true, rlimits: [{ name: 'nofile', soft: 10, hard: -1 }], capabilities: { add: [], drop: ['ALL'] } };
    const full = new TaskPrivileges({ defaults: DEFAULT_PRIVILEGES, features, root: true });
    assert.deepEqual(full.args(ctx), {
      args: ['--caps', '', '--seccomp', 'default', '--no-new-privs', '1', '--rlimit', 'nofile=10:unlimited'],
      warnings: [],
    });
    const bare = new TaskPrivileges({ defaults: DEFAULT_PRIVILEGES, features: { capabilities: false, seccomp: false, seccompProfiles: false }, root: true });
    const { args, warnings } = bare.args(undefined);
    assert.deepEqual(args, []);
    assert.match(warnings.join('\n'), /capabilities were not limited: .*libcap-ng-dev/);
    assert.match(warnings.join('\n'), /no seccomp filter: .*libseccomp-dev/);
    // An executor that is not root has no capabilities to drop (and could not drop the bounding set).
    assert.deepEqual(new TaskPrivileges({ defaults: DEFAULT_PRIVILEGES, features, root: false }).args(undefined).args, ['--seccomp', 'default']);
  });
});

describe('the CRI security context of a container task', () => {
  test('unset: the runtime default seccomp profile and default capabilities; --task-seccomp unconfined: Unconfined', () => {
    assert.deepEqual(containerSecurity(undefined), {
      noNewPrivs: false,
      seccomp: { profileType: SecurityProfile_ProfileType.RuntimeDefault, localhostRef: '' },
    });
    assert.equal(containerSecurity(undefined, 'unconfined').seccomp?.profileType, SecurityProfile_ProfileType.Unconfined);
  });

  test('capabilities go without CAP_ (the runtime adds it), no_new_privs and a localhost profile as given', () => {
    const ctx: SecurityContext = {
      capabilities: { add: ['cap_net_admin', 'ALL'], drop: ['Chown'] },
      noNewPrivileges: true,
      seccompProfile: { type: 'Localhost', localhostProfile: '/etc/seccomp/p.json' },
    };
    const config = containerConfig({
      spec: { image: 'busybox', command: [], args: [], env: [], volumeMounts: [] },
      labels: runLabels('t', 'u', 'o'),
      mounts: [],
      securityContext: ctx,
    });
    assert.deepEqual(config.linux?.securityContext?.capabilities, {
      addCapabilities: ['NET_ADMIN', 'ALL'],
      dropCapabilities: ['CHOWN'],
      addAmbientCapabilities: [],
    });
    assert.equal(config.linux?.securityContext?.noNewPrivs, true);
    assert.deepEqual(config.linux?.securityContext?.seccomp, { profileType: SecurityProfile_ProfileType.Localhost, localhostRef: '/etc/seccomp/p.json' });
    assert.ok(config.linux?.securityContext?.namespaceOptions, 'the namespace options stay');
  });
});

const ORDER = ['CHOWN', 'DAC_OVERRIDE', 'FOWNER', 'FSETID', 'KILL', 'SETGID', 'SETUID', 'SETPCAP', 'NET_BIND_SERVICE', 'NET_RAW', 'SYS_CHROOT', 'MKNOD', 'AUDIT_WRITE', 'SETFCAP'];
const order = (name: string) => ORDER.indexOf(name);
