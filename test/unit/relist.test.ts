// The container relist: one ListContainers per owner answers for every watched
// container, and only a container whose state changed wakes its task.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type Container, ContainerState } from '../../gen/cri/runtime/v1/api.js';
import { LABEL_OWNER } from '../../src/runtime/container/mapping.js';
import { Relist } from '../../src/runtime/container/relist.js';

const container = (id: string, state: ContainerState, owner = 'o1') => ({ id, state, labels: { [LABEL_OWNER]: owner } }) as unknown as Container;

describe('container relist', () => {
  test('wakes a task only when its container changes state or vanishes, with one list call per owner and pass', async () => {
    let containers = [container('a', ContainerState.CONTAINER_RUNNING), container('b', ContainerState.CONTAINER_RUNNING)];
    const calls: Record<string, string>[] = [];
    const relist = new Relist(async (selector) => {
      calls.push(selector);
      return containers.filter((c) => c.labels[LABEL_OWNER] === selector[LABEL_OWNER]);
    }, 60_000);
    const woken: string[] = [];
    for (const id of ['a', 'b']) relist.add({ owner: 'o1', containerId: () => id, onChange: () => woken.push(id) });
    await relist.relist();
    assert.deepEqual(woken.sort(), ['a', 'b'], 'the first pass establishes each state');
    assert.equal(calls.length, 1, 'one call for both');
    woken.length = 0;
    await relist.relist();
    assert.deepEqual(woken, [], 'nothing changed, nobody is woken');
    containers = [container('a', ContainerState.CONTAINER_EXITED)];
    await relist.relist();
    assert.deepEqual(woken.sort(), ['a', 'b'], 'a exited, b vanished');
    relist.close();
  });

  test('a list the runtime does not answer wakes every task of that owner, so each inspects itself', async () => {
    let fail = false;
    const relist = new Relist(async () => {
      if (fail) throw new Error('unavailable');
      return [container('a', ContainerState.CONTAINER_RUNNING)];
    }, 60_000);
    let woken = 0;
    relist.add({ owner: 'o1', containerId: () => 'a', onChange: () => woken++ });
    await relist.relist();
    fail = true;
    await relist.relist();
    await relist.relist();
    assert.equal(woken, 3);
    relist.close();
  });

  test('a task removed from the watch is not woken, and a pass still running is not doubled', async () => {
    let release!: () => void;
    let calls = 0;
    const relist = new Relist(async () => {
      calls++;
      await new Promise<void>((resolve) => {
        release = resolve;
      });
      return [];
    }, 60_000);
    let woken = 0;
    const stop = relist.add({ owner: 'o1', containerId: () => 'a', onChange: () => woken++ });
    const first = relist.relist();
    await relist.relist();
    assert.equal(calls, 1, 'the second pass was skipped');
    stop();
    release();
    await first;
    assert.equal(woken, 0);
  });
});
