/*
 * task-privs: applies a sidecar task's privileges inside the main container, then execs it.
 *
 * Why it exists: a sidecar task is started by nsenter, which needs CAP_SYS_ADMIN (setns)
 * and, for a chroot, CAP_SYS_CHROOT; and the default seccomp profile denies setns. So the
 * privileges cannot be dropped before nsenter: they are dropped by this program, which
 * nsenter runs once it has entered the namespaces. The main container's filesystem need
 * not have it (nor setpriv, nor the host's libc): the shim opens this binary on the host
 * and hands it down as fd TASK_PRIVS_FD, nsenter execs /proc/self/fd/<that fd>, and the
 * binary is linked statically (scripts/build-shim.mjs).
 *
 * Usage: task-privs [privilege options, see privileges.h] [--uid N] [--gid N]
 *                   [--chroot DIR] [--cwd DIR] -- PROGRAM [ARG...]
 * Ids are numeric (the executor resolves names in the main container's /etc/passwd); a gid
 * also clears the supplementary groups. A failure prints "task-privs: <why>" on stderr and
 * exits 126 (as a shell does for a program it cannot run), so the task's log says why.
 *
 * The program runs in a child: this process waits for it and ends as it did (its exit code,
 * or the same signal, which nsenter and then task-shim pass on), as nsenter does for its own
 * child. Being the parent is what lets it see a death before exec (a seccomp rule that kills
 * on execve, the OOM killer): the child's PF_FORKNOEXEC is read before it is reaped
 * (has_execed). Such a death is reported on TASK_PRIVS_REPORT_FD, and task-shim records a
 * start failure instead of a run. While it waits, every signal is blocked (SIGKILL aside): a
 * stop signals every process of the task but nsenter, and must reach the program only.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "privileges.h"

#define TASK_PRIVS_FD 200   /* also in src/runtime/sidecar/sidecar-runtime.ts and task-shim.c */

static void fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("task-privs: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(126);
}

static unsigned parse_id(const char *opt, const char *s) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (!*s || *end || errno || v > 4294967294ULL || s[0] == '-') fail("%s must be a numeric id, got \"%s\"", opt, s);
  return (unsigned)v;
}

/* Waits for the program's process CHILD and ends as it did; a death before its exec is
 * reported first (see the header). */
static int wait_for_program(pid_t child, const char *prog) {
  siginfo_t info;
  while (waitid(P_PID, child, &info, WEXITED | WNOWAIT) != 0) {
    if (errno != EINTR) fail("wait: %s", strerror(errno));
  }
  int execed = has_execed(child), status = 0;   /* read while it is a zombie, not reaped */
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {}
  if (!execed && WIFSIGNALED(status)) {
    char msg[PRIV_MSG_MAX];
    died_before_exec_message(msg, sizeof msg, status, prog);
    if (write(TASK_PRIVS_REPORT_FD, msg, strlen(msg)) < 0) { /* no task-shim reads it: the signal still says how it ended */ }
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  /* That signal only: a stop's SIGTERM pending here must not replace the SIGKILL that ended the program. */
  int sig = WTERMSIG(status);
  sigset_t just;
  sigemptyset(&just);
  sigaddset(&just, sig);
  signal(sig, SIG_DFL);
  kill(getpid(), sig);
  sigprocmask(SIG_UNBLOCK, &just, NULL);
  return 128 + sig;   /* not reached: the signal ended the child by its default action, so it ends this process too */
}

int main(int argc, char **argv) {
  struct privileges priv = {0};
  const char *chroot_dir = NULL, *cwd = NULL;
  long long uid = -1, gid = -1;
  char **prog = NULL, msg[PRIV_MSG_MAX];
  /* The binary's own fd and the report pipe must not reach the task. */
  if (fcntl(TASK_PRIVS_FD, F_SETFD, FD_CLOEXEC) != 0 && errno != EBADF) fail("fcntl: %s", strerror(errno));
  if (fcntl(TASK_PRIVS_REPORT_FD, F_SETFD, FD_CLOEXEC) != 0 && errno != EBADF) fail("fcntl: %s", strerror(errno));
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = argv[i + 1];
    if (strcmp(a, "--") == 0) {
      prog = argv + i + 1;
      break;
    }
    if (!v) fail("option %s needs a value", a);
    if (strcmp(a, "--uid") == 0) uid = parse_id(a, v);
    else if (strcmp(a, "--gid") == 0) gid = parse_id(a, v);
    else if (strcmp(a, "--chroot") == 0) chroot_dir = v;
    else if (strcmp(a, "--cwd") == 0) cwd = v;
    else {
      int r = privileges_option(&priv, a, v, msg, sizeof msg);
      if (r < 0) fail("%s", msg);
      if (r == 0) fail("unknown option %s", a);
    }
    i++;
  }
  if (!prog || !prog[0]) fail("no program given after --");
  sigset_t all, was;
  sigfillset(&all);
  sigprocmask(SIG_BLOCK, &all, &was);   /* from before the fork: a stop may come at any time */
  pid_t child = fork();
  if (child < 0) fail("fork: %s", strerror(errno));
  if (child > 0) return wait_for_program(child, prog[0]);
  sigprocmask(SIG_SETMASK, &was, NULL);
  if (privileges_before_identity(&priv, msg, sizeof msg) != 0) fail("%s", msg);
  if (chroot_dir) {
    if (chroot(chroot_dir) != 0) fail("chroot %s: %s%s", chroot_dir, strerror(errno), privilege_hint(errno, "chroot"));
    if (!cwd && chdir("/") != 0) fail("chdir /: %s", strerror(errno));
  }
  if (cwd && chdir(cwd) != 0) fail("chdir %s: %s", cwd, strerror(errno));
  if (gid >= 0) {
    if (setgroups(0, NULL) != 0) fail("set supplementary groups: %s%s", strerror(errno), privilege_hint(errno, "setgroups"));
    if (setgid((gid_t)gid) != 0) fail("setgid %lld: %s%s", gid, strerror(errno), privilege_hint(errno, "setgid"));
  }
  if (uid >= 0 && setuid((uid_t)uid) != 0) fail("setuid %lld: %s%s", uid, strerror(errno), privilege_hint(errno, "setuid"));
  if (privileges_after_identity(&priv, msg, sizeof msg) != 0) fail("%s", msg);
  execvp(prog[0], prog);
  int e = errno;
  fprintf(stderr, "task-privs: exec %s: %s\n", prog[0], strerror(e));
  return e == ENOENT ? 127 : 126;
}
