/* task-shim --spawner (spawner.c): starts task-shims for the executor. */
#ifndef TASK_SHIM_SPAWNER_H
#define TASK_SHIM_SPAWNER_H
int spawner_main(void);
#endif
