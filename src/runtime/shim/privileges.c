/*
 * privileges: capabilities (libcap-ng), no_new_privs (prctl), the default seccomp profile
 * or a profile file's filter (libseccomp) and rlimits for a task, applied between fork and exec. See privileges.h.
 * HAVE_CAPNG and HAVE_SECCOMP are set by scripts/build-shim.mjs when the headers exist
 * (Debian: libcap-ng-dev, libseccomp-dev); without one, asking for its feature is an error
 * naming the package, and --features leaves it out so the executor can say so at start-up.
 */
#define _GNU_SOURCE
#include "privileges.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef HAVE_CAPNG
#include <cap-ng.h>
#endif
#ifdef HAVE_SECCOMP
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

static const struct { const char *name; int resource; } rlimit_names[] = {
  {"as", RLIMIT_AS}, {"core", RLIMIT_CORE}, {"cpu", RLIMIT_CPU}, {"data", RLIMIT_DATA},
  {"fsize", RLIMIT_FSIZE}, {"locks", RLIMIT_LOCKS}, {"memlock", RLIMIT_MEMLOCK},
  {"msgqueue", RLIMIT_MSGQUEUE}, {"nice", RLIMIT_NICE}, {"nofile", RLIMIT_NOFILE},
  {"nproc", RLIMIT_NPROC}, {"rss", RLIMIT_RSS}, {"rtprio", RLIMIT_RTPRIO},
  {"rttime", RLIMIT_RTTIME}, {"sigpending", RLIMIT_SIGPENDING}, {"stack", RLIMIT_STACK},
};

static int parse_limit(const char *s, const char **end, rlim_t *out) {
  if (strncmp(s, "unlimited", 9) == 0) {
    *out = RLIM_INFINITY;
    *end = s + 9;
    return 0;
  }
  if (*s < '0' || *s > '9') return -1;
  char *e;
  errno = 0;
  unsigned long long v = strtoull(s, &e, 10);
  if (errno || v >= (unsigned long long)RLIM_INFINITY) return -1;
  *out = (rlim_t)v;
  *end = e;
  return 0;
}

static int parse_rlimit(struct privileges *p, const char *val, char *err, size_t errlen) {
  const char *eq = strchr(val, '=');
  if (!eq || p->nrlimits >= PRIV_MAX_RLIMITS) {
    snprintf(err, errlen, "--rlimit must be NAME=SOFT:HARD (at most %d), got \"%s\"", PRIV_MAX_RLIMITS, val);
    return -1;
  }
  int resource = -1;
  const char *name = NULL;
  for (size_t k = 0; k < sizeof rlimit_names / sizeof *rlimit_names; k++)
    if (strlen(rlimit_names[k].name) == (size_t)(eq - val) && strncmp(val, rlimit_names[k].name, (size_t)(eq - val)) == 0) {
      resource = rlimit_names[k].resource;
      name = rlimit_names[k].name;
    }
  const char *s = eq + 1, *end = s;
  rlim_t soft, hard;
  if (resource < 0) {
    snprintf(err, errlen, "--rlimit: unknown limit in \"%s\"", val);
    return -1;
  }
  if (parse_limit(s, &end, &soft) || *end != ':' || parse_limit(end + 1, &end, &hard) || *end ||
      (hard != RLIM_INFINITY && (soft == RLIM_INFINITY || soft > hard))) {
    snprintf(err, errlen, "--rlimit %s: SOFT:HARD must be numbers or \"unlimited\" with SOFT <= HARD, got \"%s\"", name, s);
    return -1;
  }
  p->rl[p->nrlimits].resource = resource;
  p->rl[p->nrlimits].name = name;
  p->rl[p->nrlimits].value.rlim_cur = soft;
  p->rl[p->nrlimits].value.rlim_max = hard;
  p->nrlimits++;
  return 1;
}

static int parse_caps(struct privileges *p, const char *val, char *err, size_t errlen) {
#ifdef HAVE_CAPNG
  char buf[2048];
  snprintf(buf, sizeof buf, "%s", val);
  p->caps_set = 1;
  p->keep[0] = p->keep[1] = 0;
  char *save = NULL;
  for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    int cap = capng_name_to_capability(tok);
    if (cap < 0 || cap >= 128) {
      snprintf(err, errlen, "--caps: unknown capability \"%s\"", tok);
      return -1;
    }
    p->keep[cap / 64] |= 1ULL << (cap % 64);
  }
  return 1;
#else
  (void)p;
  snprintf(err, errlen, "--caps %s: this task-shim was built without libcap-ng (Debian: apt-get install libcap-ng-dev, then npm run build:shim -- --force)", val);
  return -1;
#endif
}

#ifdef HAVE_SECCOMP
/* An action of --seccomp-default / --seccomp-rule, the first len bytes of s: 0, or -1. */
static int parse_action(const char *s, size_t len, uint32_t *out) {
  char buf[32];
  if (len >= sizeof buf) return -1;
  memcpy(buf, s, len);
  buf[len] = 0;
  if (strncmp(buf, "errno=", 6) == 0) {
    char *end;
    if (buf[6] < '0' || buf[6] > '9') return -1;
    unsigned long v = strtoul(buf + 6, &end, 10);
    if (*end || v > 4095) return -1;
    *out = SCMP_ACT_ERRNO((uint32_t)v);
    return 0;
  }
  static const struct { const char *name; uint32_t action; } actions[] = {
    {"allow", SCMP_ACT_ALLOW}, {"kill_thread", SCMP_ACT_KILL}, {"trap", SCMP_ACT_TRAP},
#ifdef SCMP_ACT_KILL_PROCESS
    {"kill_process", SCMP_ACT_KILL_PROCESS},
#endif
#ifdef SCMP_ACT_LOG
    {"log", SCMP_ACT_LOG},
#endif
  };
  for (size_t k = 0; k < sizeof actions / sizeof *actions; k++)
    if (strcmp(buf, actions[k].name) == 0) {
      *out = actions[k].action;
      return 0;
    }
  return -1;
}
#endif

static int parse_profile_option(struct privileges *p, const char *opt, const char *val, char *err, size_t errlen) {
#ifdef HAVE_SECCOMP
  uint32_t action;
  if (strcmp(opt, "--seccomp-default") == 0) {
    if (parse_action(val, strlen(val), &action) != 0) {
      snprintf(err, errlen, "--seccomp-default: unknown action \"%s\" (allow, errno=N, kill_thread, kill_process, trap, log)", val);
      return -1;
    }
    p->profile_default = val;
    return 1;
  }
  const char *colon = strchr(val, ':');
  if (!colon || parse_action(val, (size_t)(colon - val), &action) != 0 || !colon[1] || p->nrules >= PRIV_MAX_SECCOMP_RULES) {
    snprintf(err, errlen, "--seccomp-rule must be ACTION:NAME,NAME,... (at most %d), got \"%.100s\"", PRIV_MAX_SECCOMP_RULES, val);
    return -1;
  }
  p->rules[p->nrules++] = val;
  return 1;
#else
  (void)p;
  (void)val;
  snprintf(err, errlen, "%s: this task-shim was built without libseccomp (Debian: apt-get install libseccomp-dev, then npm run build:shim -- --force)", opt);
  return -1;
#endif
}

int privileges_option(struct privileges *p, const char *opt, const char *val, char *err, size_t errlen) {
  if (strcmp(opt, "--caps") == 0) return parse_caps(p, val, err, errlen);
  if (strcmp(opt, "--seccomp-default") == 0 || strcmp(opt, "--seccomp-rule") == 0) return parse_profile_option(p, opt, val, err, errlen);
  if (strcmp(opt, "--rlimit") == 0) return parse_rlimit(p, val, err, errlen);
  if (strcmp(opt, "--seccomp-bpf") == 0) {
#ifdef HAVE_SECCOMP
    if (val[0] != '/') {
      snprintf(err, errlen, "--seccomp-bpf must be an absolute path, got \"%.100s\"", val);
      return -1;
    }
    p->seccomp_bpf = val;
    return 1;
#else
    snprintf(err, errlen, "--seccomp-bpf: this task-shim was built without libseccomp (Debian: apt-get install libseccomp-dev, then npm run build:shim -- --force)");
    return -1;
#endif
  }
  if (strcmp(opt, "--no-new-privs") == 0) {
    if (strcmp(val, "0") && strcmp(val, "1")) {
      snprintf(err, errlen, "--no-new-privs must be 0 or 1, got \"%s\"", val);
      return -1;
    }
    p->no_new_privs = val[0] == '1';
    return 1;
  }
  if (strcmp(opt, "--seccomp") == 0) {
    if (strcmp(val, "default") && strcmp(val, "unconfined")) {
      snprintf(err, errlen, "--seccomp must be default or unconfined, got \"%s\"", val);
      return -1;
    }
    p->seccomp_default = strcmp(val, "default") == 0;
#ifndef HAVE_SECCOMP
    if (p->seccomp_default) {
      snprintf(err, errlen, "--seccomp default: this task-shim was built without libseccomp (Debian: apt-get install libseccomp-dev, then npm run build:shim -- --force)");
      return -1;
    }
#endif
    return 1;
  }
  return 0;
}

const char *privilege_hint(int err, const char *what) {
  if (err != EPERM && err != EACCES) return "";
  if (strcmp(what, "chroot") == 0) return " (needs CAP_SYS_CHROOT)";
  if (strcmp(what, "setuid") == 0) return " (needs CAP_SETUID)";
  if (strcmp(what, "setgid") == 0 || strcmp(what, "setgroups") == 0) return " (needs CAP_SETGID)";
  if (strcmp(what, "rlimit") == 0) return " (raising a hard limit needs CAP_SYS_RESOURCE)";
  if (strcmp(what, "bounding") == 0) return " (needs CAP_SETPCAP)";
  if (strcmp(what, "seccomp") == 0) return " (needs CAP_SYS_ADMIN or no_new_privs)";
  return "";
}

#ifdef HAVE_SECCOMP
/* The default profile: a denylist in the spirit of Docker's default. Every call here fails
 * with EPERM: kernel modules, kexec, reboot, swap, clocks, accounting, mounts and the new
 * mount API, namespaces (unshare, setns, and clone with any CLONE_NEW* flag), keyrings,
 * BPF, perf events, ptrace and cross-process memory access, open_by_handle_at (the
 * "shocker" escape), userfaultfd, quotactl and a few obsolete calls. clone3 fails with
 * ENOSYS so that libc falls back to clone, whose flags a filter can see. Names the
 * architecture lacks are skipped. */
static const char *const denied[] = {
  "acct", "add_key", "bpf", "clock_adjtime", "clock_settime", "clock_settime64", "create_module",
  "delete_module", "finit_module", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick",
  "get_kernel_syms", "init_module", "ioperm", "iopl", "kexec_file_load", "kexec_load", "keyctl",
  "lookup_dcookie", "mount", "mount_setattr", "move_mount", "nfsservctl", "open_by_handle_at",
  "open_tree", "perf_event_open", "pivot_root", "process_vm_readv", "process_vm_writev", "ptrace",
  "query_module", "quotactl", "reboot", "request_key", "setns", "settimeofday", "stime", "swapoff",
  "swapon", "_sysctl", "syslog", "umount", "umount2", "unshare", "uselib", "userfaultfd", "ustat",
  "vm86", "vm86old",
};

/* A filter with this default action for the native architecture and its compat ones. */
static scmp_filter_ctx new_filter(uint32_t default_action) {
  scmp_filter_ctx ctx = seccomp_init(default_action);
  if (!ctx) return NULL;
  /* The compat architectures too, as Docker does: without them a 32-bit program (x86 on x86-64,
   * arm on aarch64) would be killed by the filter's bad-architecture action at its first call. */
  uint32_t native = seccomp_arch_native();
  if (native == SCMP_ARCH_X86_64) {
    seccomp_arch_add(ctx, SCMP_ARCH_X86);
    seccomp_arch_add(ctx, SCMP_ARCH_X32);
  } else if (native == SCMP_ARCH_AARCH64) {
    seccomp_arch_add(ctx, SCMP_ARCH_ARM);
  }
#if SCMP_VER_MAJOR > 2 || (SCMP_VER_MAJOR == 2 && SCMP_VER_MINOR >= 5)
  /* The kernel's errno rather than libseccomp's generic -ECANCELED. */
  seccomp_attr_set(ctx, SCMP_FLTATR_API_SYSRAWRC, 1);
#endif
  return ctx;
}

/* The compiled filter, waiting to be loaded (privileges_load_filter); what it is, for messages. */
static struct sock_fprog compiled;
static const char *compiled_what;

/* Compiles ctx to BPF (kept in `compiled`) and releases it; what: "the default profile",
 * "the profile", for messages. libseccomp builds the program only when it exports or loads
 * it, which is most of a filter's cost: exporting it here lets the caller do that part
 * early and load the program (one syscall) at the last moment. */
static int compile_filter(scmp_filter_ctx ctx, const char *what, char *msg, size_t n) {
  int fd = memfd_create("seccomp-bpf", MFD_CLOEXEC), e = fd < 0 ? errno : -seccomp_export_bpf(ctx, fd);
  seccomp_release(ctx);
  off_t size = e ? 0 : lseek(fd, 0, SEEK_END);
  void *prog = NULL;
  if (!e && (size <= 0 || size % (off_t)sizeof(struct sock_filter) != 0 || size / (off_t)sizeof(struct sock_filter) > BPF_MAXINSNS))
    e = EINVAL;
  if (!e && !(prog = malloc((size_t)size))) e = ENOMEM;
  if (!e && pread(fd, prog, (size_t)size, 0) != size) e = errno ? errno : EIO;
  if (fd >= 0) close(fd);
  if (e) {
    free(prog);
    snprintf(msg, n, "seccomp: cannot compile %s: %s", what, strerror(e));
    return -1;
  }
  compiled.len = (unsigned short)(size / (off_t)sizeof(struct sock_filter));
  compiled.filter = prog;
  compiled_what = what;
  return 0;
}

static int compile_default_profile(char *msg, size_t n) {
  scmp_filter_ctx ctx = new_filter(SCMP_ACT_ALLOW);
  if (!ctx) {
    snprintf(msg, n, "seccomp: cannot create a filter");
    return -1;
  }
  int rc = 0;
  for (size_t k = 0; !rc && k < sizeof denied / sizeof *denied; k++) {
    int nr = seccomp_syscall_resolve_name(denied[k]);
    if (nr != __NR_SCMP_ERROR) rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0);
  }
  /* (CLONE_NEWTIME shares its bit with clone's exit signal and only works with unshare and
   * clone3, both denied anyway.) */
  static const unsigned long long ns_flags[] = {CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER,
                                                CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWCGROUP};
  for (size_t k = 0; !rc && k < sizeof ns_flags / sizeof *ns_flags; k++)
    rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1, SCMP_A0(SCMP_CMP_MASKED_EQ, ns_flags[k], ns_flags[k]));
  int clone3 = seccomp_syscall_resolve_name("clone3");
  if (!rc && clone3 != __NR_SCMP_ERROR) rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), clone3, 0);
  if (rc) {
    seccomp_release(ctx);
    snprintf(msg, n, "seccomp: cannot build the default profile: %s", strerror(-rc));
    return -1;
  }
  return compile_filter(ctx, "the default profile", msg, n);
}

/* A profile file's filter (--seccomp-default, --seccomp-rule; checked when parsed). A name
 * libseccomp knows for another architecture only (e.g. arm_fadvise64_64 on x86-64) resolves
 * to a pseudo number that the rule applies where it exists, as runc does; one it does not
 * know at all (a typo, or a call newer than this libseccomp) fails the start, named. */
static int compile_profile(const struct privileges *p, char *msg, size_t n) {
  uint32_t action;
  parse_action(p->profile_default, strlen(p->profile_default), &action);
  scmp_filter_ctx ctx = new_filter(action);
  if (!ctx) {
    snprintf(msg, n, "seccomp: cannot create a filter (default action %s)", p->profile_default);
    return -1;
  }
  for (int r = 0; r < p->nrules; r++) {
    const char *colon = strchr(p->rules[r], ':');
    parse_action(p->rules[r], (size_t)(colon - p->rules[r]), &action);
    char *names = strdup(colon + 1), *save = NULL;
    if (!names) {
      seccomp_release(ctx);
      snprintf(msg, n, "seccomp: out of memory");
      return -1;
    }
    for (char *name = strtok_r(names, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
      int nr = seccomp_syscall_resolve_name(name), rc = 0;
      if (nr == __NR_SCMP_ERROR) {
        snprintf(msg, n, "seccomp profile: unknown syscall \"%.64s\" (libseccomp %u.%u.%u knows no such name)", name,
                 seccomp_version()->major, seccomp_version()->minor, seccomp_version()->micro);
      } else if ((rc = seccomp_rule_add(ctx, action, nr, 0)) != 0) {
        snprintf(msg, n, "seccomp profile: cannot add the rule for %.64s: %s", name, strerror(-rc));
      }
      if (nr == __NR_SCMP_ERROR || rc) {
        free(names);
        seccomp_release(ctx);
        return -1;
      }
    }
    free(names);
  }
  return compile_filter(ctx, "the profile", msg, n);
}

/* Compiles the filter p asks for (a profile file's, or the default profile) into `compiled`. */
static int compile_wanted(const struct privileges *p, char *msg, size_t n) {
  return p->profile_default ? compile_profile(p, msg, n) : compile_default_profile(msg, n);
}

/* The file task-shim --seccomp-export writes and --seccomp-bpf reads: this header, then the
 * program's instructions as seccomp_export_bpf gives them (native byte order). The length
 * and checksum let a short, truncated or damaged file be told from a program before it is
 * loaded, so that such a file costs the compile, never the task's start. */
#define EXPORT_MAGIC "TSKBPF1\n"
struct export_header {
  char magic[8];
  uint32_t len;     /* instructions */
  uint32_t sum;     /* FNV-1a of the instructions' bytes */
};

static uint32_t fnv1a(const void *data, size_t size) {
  const unsigned char *b = data;
  uint32_t h = 2166136261u;
  for (size_t k = 0; k < size; k++) h = (h ^ b[k]) * 16777619u;
  return h;
}

/* Whether st is owned by this process's user and writable by no one else. */
static int private_to_us(const struct stat *st) {
  return st->st_uid == geteuid() && !(st->st_mode & (S_IWGRP | S_IWOTH));
}

/* --seccomp-bpf PATH: reads the program into `compiled`; 1 when it is usable, 0 when it is
 * not (missing, unreadable, not ours, in a directory others can write, a symlink, short or
 * damaged), and then the caller compiles the filter itself. The program is the task's
 * sandbox, so only a file that only this user could have written is taken: its directory
 * (opened without following a symlink, and the file then opened in that very directory)
 * and the file must both be ours and not group- or world-writable. */
static int read_exported(const char *path, const char *what) {
  const char *slash = strrchr(path, '/');
  char dir[4096];
  size_t dirlen = slash == path ? 1 : (size_t)(slash - path);   /* "/" for a file at the root */
  if (!slash || !slash[1] || dirlen >= sizeof dir) return 0;
  memcpy(dir, path, dirlen);
  dir[dirlen] = '\0';
  struct stat st;
  int dfd = open(dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (dfd < 0) return 0;
  if (fstat(dfd, &st) != 0 || !private_to_us(&st)) {
    close(dfd);
    return 0;
  }
  /* O_NONBLOCK: a FIFO put there must not hold the start; it is refused below as not regular. */
  int fd = openat(dfd, slash + 1, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  close(dfd);
  if (fd < 0) return 0;
  struct export_header h;
  void *prog = NULL;
  int ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && private_to_us(&st) && st.st_size > (off_t)sizeof h &&
           (st.st_size - (off_t)sizeof h) % (off_t)sizeof(struct sock_filter) == 0 &&
           (st.st_size - (off_t)sizeof h) / (off_t)sizeof(struct sock_filter) <= BPF_MAXINSNS;
  size_t size = ok ? (size_t)st.st_size - sizeof h : 0;
  ok = ok && pread(fd, &h, sizeof h, 0) == (ssize_t)sizeof h && memcmp(h.magic, EXPORT_MAGIC, sizeof h.magic) == 0 &&
       (size_t)h.len * sizeof(struct sock_filter) == size && (prog = malloc(size)) != NULL &&
       pread(fd, prog, size, sizeof h) == (ssize_t)size && fnv1a(prog, size) == h.sum;
  close(fd);
  if (!ok) {
    free(prog);
    return 0;
  }
  compiled.len = (unsigned short)h.len;
  compiled.filter = prog;
  compiled_what = what;
  return 1;
}

/* Writes `compiled` to path in the format read_exported reads; 0, or an errno. */
static int write_exported(const char *path) {
  size_t size = (size_t)compiled.len * sizeof(struct sock_filter);
  struct export_header h = {.len = compiled.len, .sum = fnv1a(compiled.filter, size)};
  memcpy(h.magic, EXPORT_MAGIC, sizeof h.magic);
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return errno;
  int e = 0;
  errno = 0;   /* a short write sets none: EIO below */
  if (pwrite(fd, &h, sizeof h, 0) != (ssize_t)sizeof h || pwrite(fd, compiled.filter, size, sizeof h) != (ssize_t)size) e = errno ? errno : EIO;
  if (close(fd) != 0 && !e) e = errno;
  if (e) unlink(path);
  return e;
}
#endif

int privileges_export_command(int argc, char **argv) {
  /* argv[0]: FILE; then the filter's options only. */
  struct privileges p = {0};
  char msg[PRIV_MSG_MAX] = "";
  int k = 1;
  for (; k + 1 < argc && msg[0] == '\0'; k += 2) {
    const char *opt = argv[k];
    if (strcmp(opt, "--seccomp") && strcmp(opt, "--seccomp-default") && strcmp(opt, "--seccomp-rule"))
      snprintf(msg, sizeof msg, "--seccomp-export takes only --seccomp, --seccomp-default and --seccomp-rule, got \"%.64s\"", opt);
    else
      privileges_option(&p, opt, argv[k + 1], msg, sizeof msg);
  }
  if (!msg[0] && (argc < 1 || k != argc)) snprintf(msg, sizeof msg, "usage: task-shim --seccomp-export FILE [--seccomp default | --seccomp-default ACTION --seccomp-rule RULE...]");
#ifdef HAVE_SECCOMP
  if (!msg[0] && !p.profile_default && !p.seccomp_default)
    snprintf(msg, sizeof msg, "--seccomp-export: no filter asked for (--seccomp default, or --seccomp-default with --seccomp-rule)");
  if (!msg[0] && compile_wanted(&p, msg, sizeof msg) == 0) {
    int e = write_exported(argv[0]);
    if (e) snprintf(msg, sizeof msg, "--seccomp-export %s: %s", argv[0], strerror(e));
  }
#else
  if (!msg[0]) snprintf(msg, sizeof msg, "--seccomp-export: this task-shim was built without libseccomp (Debian: apt-get install libseccomp-dev, then npm run build:shim -- --force)");
#endif
  if (!msg[0]) return 0;
  fprintf(stderr, "task-shim: %s\n", msg);
  return 1;
}

int privileges_prepare(const struct privileges *p, char *msg, size_t n) {
#ifdef HAVE_SECCOMP
  /* Compiled before the rlimits: exporting the program takes a file descriptor and memory,
   * which a task's small nofile (or as, data) limit must not deny the supervisor. */
  if (p->profile_default || p->seccomp_default) {
    /* The program compiled once (--seccomp-bpf) when it can be used, else compiled here. */
    if (!(p->seccomp_bpf && read_exported(p->seccomp_bpf, p->profile_default ? "the profile" : "the default profile")) &&
        compile_wanted(p, msg, n) != 0)
      return -1;
  }
#endif
  for (int k = 0; k < p->nrlimits; k++) {
    if (setrlimit(p->rl[k].resource, &p->rl[k].value) != 0) {
      int e = errno;
      snprintf(msg, n, "rlimit %s: %s%s", p->rl[k].name, strerror(e), privilege_hint(e, "rlimit"));
      return -1;
    }
  }
#ifdef HAVE_CAPNG
  if (p->caps_set) {
    /* The bounding set first, while CAP_SETPCAP is still effective: no later execve (of a
     * setuid-root or file-capability program) can gain what is not kept here. */
    for (int cap = 0; cap <= (int)CAP_LAST_CAP && cap < 128; cap++) {
      if (p->keep[cap / 64] & (1ULL << (cap % 64))) continue;
      if (prctl(PR_CAPBSET_READ, cap, 0, 0, 0) != 1) continue;
      if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) {
        int e = errno;
        const char *name = capng_capability_to_name((unsigned)cap);
        snprintf(msg, n, "drop capability %s from the bounding set: %s%s", name ? name : "?", strerror(e), privilege_hint(e, "bounding"));
        return -1;
      }
    }
  }
#endif
  return 0;
}

int privileges_load_filter(char *msg, size_t n) {
#ifdef HAVE_SECCOMP
  if (!compiled.filter) return 0;
  /* Flags 0, as libseccomp's seccomp_load with these attributes. */
  int rc = (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &compiled);
  if (rc != 0 && errno == EACCES) {
    /* No CAP_SYS_ADMIN (an executor that is not root): the kernel only takes a filter
     * from a process with no_new_privs, as Docker's rootless mode does. */
    rc = prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 ? (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &compiled) : -1;
  }
  if (rc != 0) {
    int e = errno;
    snprintf(msg, n, "seccomp: cannot load %s: %s%s", compiled_what, strerror(e), privilege_hint(e, "seccomp"));
    return -1;
  }
#else
  (void)msg;
  (void)n;
#endif
  return 0;
}

int privileges_before_identity(const struct privileges *p, char *msg, size_t n) {
  return privileges_prepare(p, msg, n) != 0 ? -1 : privileges_load_filter(msg, n);
}

int privileges_after_identity(const struct privileges *p, char *msg, size_t n) {
#ifdef HAVE_CAPNG
  if (p->caps_set) {
    /* Effective and permitted: what is kept and still held (a non-root identity holds
     * nothing after setuid). Inheritable and ambient: empty, as Docker since 20.10. */
    if (capng_get_caps_process() != 0) {
      snprintf(msg, n, "read capabilities: %s", strerror(errno));
      return -1;
    }
    for (int cap = 0; cap <= (int)CAP_LAST_CAP && cap < 128; cap++) {
      capng_update(CAPNG_DROP, CAPNG_INHERITABLE, (unsigned)cap);
      if (!(p->keep[cap / 64] & (1ULL << (cap % 64)))) capng_update(CAPNG_DROP, CAPNG_EFFECTIVE | CAPNG_PERMITTED, (unsigned)cap);
    }
    if (capng_apply(CAPNG_SELECT_CAPS) != 0) {
      snprintf(msg, n, "set capabilities: %s", strerror(errno));
      return -1;
    }
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) {
      snprintf(msg, n, "clear ambient capabilities: %s", strerror(errno));
      return -1;
    }
  }
#endif
  if (p->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    snprintf(msg, n, "set no_new_privs: %s", strerror(errno));
    return -1;
  }
  return 0;
}

void privileges_print_unknown_syscalls(const char *list) {
#ifdef HAVE_SECCOMP
  char *names = strdup(list), *save = NULL;
  for (char *name = names ? strtok_r(names, ",", &save) : NULL; name; name = strtok_r(NULL, ",", &save))
    if (seccomp_syscall_resolve_name(name) == __NR_SCMP_ERROR) printf("%s\n", name);
  free(names);
#else
  (void)list;
#endif
}

const char *privileges_features(void) {
  return ""
#ifdef HAVE_CAPNG
         "capabilities "
#endif
#ifdef HAVE_SECCOMP
         "seccomp seccomp-profiles seccomp-bpf "
#endif
         "no-new-privs rlimits";
}

#define FORKNOEXEC 0x40   /* PF_FORKNOEXEC (linux/sched.h) in the flags of /proc/PID/stat: forked, not exec'ed */

void proc_stat_field(pid_t pid, int n, char *out, size_t size) {
  char path[64], buf[2048];
  size_t len = 0;
  out[0] = '\0';
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  for (;;) {
    ssize_t r = read(fd, buf + len, sizeof buf - 1 - len);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    len += (size_t)r;
  }
  close(fd);
  buf[len] = '\0';
  char *p = strrchr(buf, ')'), *save_ptr = NULL, *tok = NULL;
  if (!p) return;
  tok = strtok_r(p + 1, " ", &save_ptr);
  for (int field = 3; tok && field < n; field++) tok = strtok_r(NULL, " ", &save_ptr);
  if (tok && strspn(tok, "0123456789") == strlen(tok)) snprintf(out, size, "%s", tok);
}

int has_execed(pid_t pid) {
  char flags[32];
  proc_stat_field(pid, 9, flags, sizeof flags);
  return !flags[0] || !(strtoull(flags, NULL, 10) & FORKNOEXEC);
}

/* A signal's name, e.g. "SIGSYS" (a number where the C library has no sigabbrev_np). */
static void signal_name(int sig, char *out, size_t size) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  const char *abbrev = sigabbrev_np(sig);
  if (abbrev) {
    snprintf(out, size, "SIG%s", abbrev);
    return;
  }
#endif
  snprintf(out, size, "signal %d", sig);
}

void died_before_exec_message(char *out, size_t size, int status, const char *prog) {
  if (!WIFSIGNALED(status)) {
    snprintf(out, size, "the task's process exited with status %d before it could exec %s", WEXITSTATUS(status), prog);
    return;
  }
  char name[32];
  int sig = WTERMSIG(status);
  signal_name(sig, name, sizeof name);
  snprintf(out, size, "the task's process was killed by %s before it could exec %s%s", name, prog,
           sig == SIGSYS ? ": its seccomp profile kills a system call the start needs (execve, or one just before it)" : "");
}
