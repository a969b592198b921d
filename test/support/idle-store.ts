// A process that makes a TaskStore over the data dir in argv[2] and writes
// nothing: it must end by itself (the admission writer's thread must not
// keep it alive). Run by test/integration/admission-writer.test.ts.
import { TaskStore } from '../../src/store/task-store.js';
import { silent } from './in-process.js';

new TaskStore(process.argv[2]!, silent);
