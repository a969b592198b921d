/*
 * privileges: what a task may do, applied between fork and exec (least privilege).
 * Shared by task-shim (process tasks: in its child) and task-privs (sidecar tasks: run
 * by nsenter inside the main container's namespaces, after nsenter has entered them).
 *
 * Options (each takes one value):
 *   --caps LIST          the capabilities the task keeps, comma-separated kernel names
 *                        without "CAP_" (e.g. "CHOWN,KILL"), or "" for none; without it
 *                        capabilities are left as they are (the executor's --task-capabilities all)
 *   --no-new-privs 0|1   prctl(PR_SET_NO_NEW_PRIVS)
 *   --seccomp default|unconfined   the default profile (a denylist returning EPERM, see
 *                        privileges.c) or no filter; default: unconfined
 *   --seccomp-default ACTION   a profile file's filter (the executor reads and checks the
 *                        file, src/model/seccomp-profile.ts): its default action; replaces
 *                        --seccomp. ACTION: allow, errno=N (0..4095), kill_thread,
 *                        kill_process, trap, log
 *   --seccomp-rule ACTION:NAME,NAME,...   repeatable (at most PRIV_MAX_SECCOMP_RULES), with
 *                        --seccomp-default: these syscalls get ACTION. A name libseccomp
 *                        does not know fails the start, naming it
 *   --seccomp-bpf FILE   with --seccomp default or --seccomp-default: the same filter, as
 *                        compiled once by task-shim --seccomp-export FILE with the same
 *                        options, read instead of compiled again (libseccomp takes ~1 ms a
 *                        task). FILE must be an absolute path; it is used only when it and its
 *                        directory are owned by this user and writable by no one else, neither
 *                        is a symlink, and it is whole (header, length, checksum); otherwise
 *                        the filter is compiled in place as without it. It is the task's
 *                        sandbox: the executor keeps it in a private directory
 *   --rlimit NAME=SOFT:HARD   repeatable; NAME as in /proc/self/limits' short names
 *                        (nofile, nproc, core, ...), SOFT/HARD a number or "unlimited"
 * Order, and why: rlimits (raising a hard limit needs CAP_SYS_RESOURCE) and the bounding set
 * (dropping needs CAP_SETPCAP) first, then the seccomp filter (loading one without
 * no_new_privs needs CAP_SYS_ADMIN), then the caller changes identity (chroot, setgid,
 * setuid, all allowed by the filter), then the effective, permitted, inheritable and
 * ambient sets and no_new_privs. A non-root identity loses every capability at setuid.
 */
#ifndef TASK_PRIVILEGES_H
#define TASK_PRIVILEGES_H

#include <stddef.h>
#include <sys/resource.h>
#include <sys/types.h>

#define PRIV_MAX_RLIMITS 32
#define PRIV_MSG_MAX 400
#define PRIV_MAX_SECCOMP_RULES 64

struct privileges {
  int caps_set;                /* --caps given */
  unsigned long long keep[2];  /* capability bits to keep (up to 128) */
  int no_new_privs;
  int seccomp_default;
  const char *profile_default;   /* --seccomp-default: a profile's default action */
  int nrules;
  const char *rules[PRIV_MAX_SECCOMP_RULES];   /* --seccomp-rule values, ACTION:NAMES */
  const char *seccomp_bpf;       /* --seccomp-bpf: the filter, compiled by --seccomp-export */
  int nrlimits;
  struct { int resource; const char *name; struct rlimit value; } rl[PRIV_MAX_RLIMITS];
};

/* 1: the option was one of ours (stored); 0: not ours; -1: a bad value (err says why). */
int privileges_option(struct privileges *p, const char *opt, const char *val, char *err, size_t errlen);
/* Steps before the identity change; 0, or -1 with msg set. Two parts, so that a caller can
 * do the slow one early (task-shim: before its gate) and load the filter at the last moment:
 * privileges_prepare (compiling the seccomp filter, then rlimits and the bounding set), then
 * privileges_load_filter (one syscall; nothing when no filter was asked for).
 * privileges_before_identity does both. */
int privileges_prepare(const struct privileges *p, char *msg, size_t n);
int privileges_load_filter(char *msg, size_t n);
int privileges_before_identity(const struct privileges *p, char *msg, size_t n);
/* Steps after the identity change; 0, or -1 with msg set. */
int privileges_after_identity(const struct privileges *p, char *msg, size_t n);
/* task-shim --seccomp-export FILE [--seccomp default | --seccomp-default A --seccomp-rule R...]
 * (argv[0] is FILE): compiles that filter and writes it for --seccomp-bpf to FILE (created,
 * mode 0600, not followed if a symlink). The exit status: 0, or 1 with a line on stderr. */
int privileges_export_command(int argc, char **argv);
/* Prints each name in a comma-separated list that libseccomp does not know, one a line
 * (task-shim --seccomp-names LIST); without libseccomp, prints nothing. */
void privileges_print_unknown_syscalls(const char *list);
/* The features this build has, space-separated ("capabilities seccomp"), for --features. */
const char *privileges_features(void);
/* The privilege an errno from a privileged call hints at, for start errors ("" if none). */
const char *privilege_hint(int err, const char *what);

/* A death before exec. Both binaries watch a child that is to exec the task's program
 * (task-shim: its task process; task-privs: the program below nsenter) and report one that
 * died before it could as a start failure, never as a run of the program. */

/* The fd on which task-privs reports such a death to task-shim (--privs-helper), as the
 * message of the start failure; nothing is written when the program was exec'ed. */
#define TASK_PRIVS_REPORT_FD 201
/* Numeric field N (>= 3) of /proc/PID/stat, parsed after the last ')'; "" when unknown. */
void proc_stat_field(pid_t pid, int n, char *out, size_t size);
/* Whether our child PID (exited or not, but not reaped yet) has exec'ed. The kernel clears
 * PF_FORKNOEXEC in exec before it closes the close-on-exec fds, so a process with the flag
 * still set did not exec. Flags that cannot be read (no /proc) count as exec'ed. */
int has_execed(pid_t pid);
/* The start failure's message for a child that ended with wait STATUS before it could exec PROG. */
void died_before_exec_message(char *out, size_t size, int status, const char *prog);

#endif
