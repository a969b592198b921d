// A container status containerd could not keep (src/runtime/container/mapping.ts):
// after containerd crashes while a container starts, runs or exits, its CRI
// reports the container EXITED with exit code 255 and reason "Unknown" and no
// message. The task must say so rather than read as a program that exited 255.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ContainerState, ContainerStatus } from '../../gen/cri/runtime/v1/api.js';
import { observationFromStatus } from '../../src/runtime/container/mapping.js';

test("containerd's placeholder status after a crash (exit 255, reason Unknown) ends the task ContainerStatusUnknown, saying the exit code is not the program's", () => {
  const observation = observationFromStatus(
    ContainerStatus.fromPartial({
      id: 'c1',
      state: ContainerState.CONTAINER_EXITED,
      startedAt: 1700000000000000000n,
      finishedAt: 1700000001000000000n,
      exitCode: 255,
      reason: 'Unknown',
      message: '',
    }),
  );
  assert.equal(observation.state, 'exited');
  if (observation.state !== 'exited') return;
  assert.equal(observation.exitCode, 255);
  assert.equal(observation.reason, 'ContainerStatusUnknown');
  assert.match(observation.message ?? '', /lost the container's exit status.*255 is its placeholder/);
});
