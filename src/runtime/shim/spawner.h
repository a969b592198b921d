/* task-shim --spawner (spawner.c): starts task-shims for the executor. */
#ifndef TASK_SHIM_SPAWNER_H
#define TASK_SHIM_SPAWNER_H
/* The room in a pooled shim's command line (`task-shim --pooled PAD`, PAD this many spaces)
 * for the "--dir DIR" (and what else fits) it writes there once it has its arguments (see pooled_request). */
#define POOL_CMDLINE_ROOM (4096 + 64)   /* PATH_MAX and the option names: every usable DIR fits */
#define POOL_MAX 64   /* the largest --pool */
/* self_path: our own binary, started for pooled shims; pool: how many to keep (0: none). */
int spawner_main(const char *self_path, long pool);
#endif
