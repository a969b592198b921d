/*
 * task-shim: the per-task supervisor of task-executor (in the spirit of conmon and
 * Nomad's logmon).
 *
 * Why it exists: the executor is a Node process that may be restarted or even
 * SIGKILLed while tasks run. If tasks were its direct children, their stdout/stderr
 * pipes would block (or SIGPIPE) as soon as the executor stopped reading, and their
 * exit status would be lost. So the executor spawns one detached shim per task; the
 * shim is the task's parent, owns the read ends of its output pipes, writes the
 * output to rotated log files, reaps the task (and, as child subreaper, every
 * orphaned descendant) and records the exit status in a file. The shim never
 * depends on the executor: it only talks to it through files and best-effort event
 * lines on its own stdout.
 *
 * Usage: task-shim --dir DIR [--log-max-bytes N] [--log-max-files N] [--cwd PATH]
 *                  [--cgroup-procs FILE]... [--user U] [--group G] [--chroot DIR]
 *                  -- PROGRAM [ARG...]
 * --user/--group take a name or a numeric id, resolved on the host before --chroot. A user
 * name also sets the supplementary groups (initgroups), HOME, USER and LOGNAME; a numeric
 * uid without a passwd entry runs with gid = uid and no supplementary groups.
 *
 * Files (DIR is absolute and must exist; <ts> = RFC 3339 UTC with 9 fractional digits):
 *   DIR/start.json {"pid":P,"pgid":P,"shimPid":S,"startTime":"<field 22 of /proc/P/stat>",
 *                   "startedAt":"<ts>"}
 *   DIR/exit.json  {"exitCode":C,"signal":S,"finishedAt":"<ts>"}, or when PROGRAM could not
 *                  be started {"exitCode":C,"signal":0,"startError":"msg","finishedAt":"<ts>"}
 *                  Both are written atomically: NAME.tmp, fsync, rename, fsync DIR.
 *   DIR/logs/output.<N>.log  CRI log format, one record per line:
 *                  "<ts> <stdout|stderr> <F|P> <payload>\n"; F ends a line, P is a partial
 *                  line (payload <= 16384 bytes, raw bytes). N only grows, files are never
 *                  renamed, at most --log-max-files of them are kept.
 * Shim stdout: one JSON object per line: {"event":"started"|"start-failed"|"exited"|
 *   "released",...}; non-blocking, dropped when the reader is slow or gone.
 * Shim exit status: 0 (also when PROGRAM failed to start), 1 if the shim could not set
 * itself up (reported on stderr and, if possible, as a start failure), 2 on usage errors.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (64 * 1024)   /* bytes read from a pipe at once */
#define MAX_PAYLOAD 16384   /* longest record payload; longer lines become P records */
#define MSG_MAX 512         /* start error message (fits one atomic pipe write) */

struct jbuf { char p[4096]; size_t n; };   /* bounded JSON text; appends truncate */

static int dir_fd = -1, logs_fd = -1, log_fd = -1;
static long long max_bytes = 10485760, max_files = 10, cur_index, cur_size;
static unsigned long long dropped;   /* output bytes lost since the last good write */
static int drop_errno, released;

static void usage(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("task-shim: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputs(" (usage: task-shim --dir DIR [--log-max-bytes N] [--log-max-files N] [--cwd PATH] "
        "[--cgroup-procs FILE]... [--user U] [--group G] [--chroot DIR] -- PROGRAM [ARG...])\n", stderr);
  va_end(ap);
  exit(2);
}

static void now_ts(char out[40]) {
  struct timespec ts = {0, 0};
  struct tm tm;
  if (clock_gettime(CLOCK_REALTIME, &ts) != 0 || !gmtime_r(&ts.tv_sec, &tm)) memset(&tm, 0, sizeof tm);
  size_t n = strftime(out, 40, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out + n, 40 - n, ".%09ldZ", ts.tv_nsec);
}

static void jraw(struct jbuf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(b->p + b->n, sizeof b->p - b->n, fmt, ap);
  va_end(ap);
  if (n > 0) b->n += (size_t)n < sizeof b->p - b->n ? (size_t)n : sizeof b->p - b->n - 1;
}

static void jstr(struct jbuf *b, const char *s) {   /* quoted, escaped JSON string */
  jraw(b, "\"");
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') jraw(b, "\\%c", c);
    else if (c < 0x20) jraw(b, "\\u%04x", c);
    else jraw(b, "%c", c);
  }
  jraw(b, "\"");
}

/* Reads until EOF, an error or a full buffer; returns the byte count. */
static size_t read_full(int fd, char *p, size_t size) {
  size_t n = 0;
  while (n < size) {
    ssize_t r = read(fd, p + n, size - n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    n += (size_t)r;
  }
  return n;
}

static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Event line on fd 1 (non-blocking, lines < PIPE_BUF): errors and EAGAIN drop it. */
static void emit(const struct jbuf *b) {
  ssize_t w;
  do w = write(1, b->p, b->n); while (w < 0 && errno == EINTR);
}

static void atomic_json(const char *name, const struct jbuf *b) {
  char tmp[64];
  snprintf(tmp, sizeof tmp, "%s.tmp", name);
  int fd = openat(dir_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return;
  int ok = write_all(fd, b->p, b->n) == 0 && fsync(fd) == 0;
  if (close(fd) != 0) ok = 0;
  if (!ok || renameat(dir_fd, tmp, dir_fd, name) != 0) {
    if (unlinkat(dir_fd, tmp, 0) != 0) { /* nothing more we can do */ }
    return;
  }
  if (fsync(dir_fd) != 0) { /* the rename is done; durability is best effort */ }
}

/* Records a start failure in exit.json and as a start-failed event. */
static void start_failed(int code, const char *msg) {
  char ts[40];
  struct jbuf f = {.n = 0}, e = {.n = 0};
  now_ts(ts);
  jraw(&f, "{\"exitCode\":%d,\"signal\":0,\"startError\":", code);
  jstr(&f, msg);
  jraw(&f, ",\"finishedAt\":\"%s\"}\n", ts);
  jraw(&e, "{\"event\":\"start-failed\",\"exitCode\":%d,\"startError\":", code);
  jstr(&e, msg);
  jraw(&e, ",\"finishedAt\":\"%s\"}\n", ts);
  if (dir_fd >= 0) atomic_json("exit.json", &f);
  emit(&e);
}

static void setup_fail(const char *what, const char *arg) {
  char msg[MSG_MAX];
  snprintf(msg, sizeof msg, "task-shim: %s %s: %s", what, arg, strerror(errno));
  fprintf(stderr, "%s\n", msg);
  start_failed(1, msg);
  exit(1);
}

static void log_name(char *out, size_t size, long long index) {
  snprintf(out, size, "output.%lld.log", index);
}

static int open_log(void) {
  char name[64];
  struct stat st;
  log_name(name, sizeof name, cur_index);
  int fd = openat(logs_fd, name, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return errno;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return e;
  }
  log_fd = fd;
  cur_size = st.st_size;
  return 0;
}

/* Writes one record with a single writev(2); returns 0 or an errno value. */
static int write_record(const char *ts, const char *stream, char tag, char *p, size_t n) {
  static char nl = '\n';
  char hdr[64];
  int h = snprintf(hdr, sizeof hdr, "%s %s %c ", ts, stream, tag);
  long long len = h + (long long)n + 1;
  if (log_fd >= 0 && cur_size > 0 && cur_size + len > max_bytes) {
    char old[64];
    close(log_fd);
    log_fd = -1;
    cur_index++;
    log_name(old, sizeof old, cur_index - max_files);
    if (cur_index - max_files >= 0 && unlinkat(logs_fd, old, 0) != 0 && errno != ENOENT) { /* retry never */ }
  }
  if (log_fd < 0) {
    int e = open_log();
    if (e) return e;
  }
  struct iovec iov[3] = {{hdr, (size_t)h}, {p, n}, {&nl, 1}};
  ssize_t w;
  do w = writev(log_fd, iov, 3); while (w < 0 && errno == EINTR);
  if (w == len) {
    cur_size += len;
    return 0;
  }
  int e = w < 0 ? errno : ENOSPC;
  if (w > 0 && ftruncate(log_fd, cur_size) != 0) { /* reopening below re-reads the size */ }
  close(log_fd);   /* reopen (and re-stat) on the next record */
  log_fd = -1;
  return e;
}

static void log_out(const char *ts, const char *stream, char tag, char *p, size_t n) {
  if (dropped) {
    char msg[200];
    int m = snprintf(msg, sizeof msg, "[task-shim] dropped %llu bytes of output: %s", dropped, strerror(drop_errno));
    if (m >= (int)sizeof msg) m = sizeof msg - 1;
    int e = write_record(ts, "stderr", 'F', msg, (size_t)m);
    if (e) {
      dropped += n + (tag == 'F');
      drop_errno = e;
      return;
    }
    dropped = 0;
  }
  int e = write_record(ts, stream, tag, p, n);
  if (e) {
    dropped += n + (tag == 'F');
    drop_errno = e;
  }
}

/* Splits one read into F records (complete lines) and P records (the rest, or pieces of
 * lines longer than MAX_PAYLOAD). Nothing is kept between reads. */
static void handle_chunk(const char *stream, char *p, size_t n) {
  char ts[40];
  if (released) return;
  now_ts(ts);
  while (n > 0) {
    char *nl = memchr(p, '\n', n);
    size_t line = nl ? (size_t)(nl - p) : n;
    while (line > MAX_PAYLOAD || (!nl && line > 0)) {
      size_t k = line > MAX_PAYLOAD ? MAX_PAYLOAD : line;
      log_out(ts, stream, 'P', p, k);
      p += k;
      n -= k;
      line -= k;
    }
    if (!nl) break;
    log_out(ts, stream, 'F', p, line);
    p += line + 1;
    n -= line + 1;
  }
}

/* Parses "output.<N>.log" (canonical decimal only); returns N or -1. */
static long long log_index(const char *name) {
  char *end, canon[64];
  if (strncmp(name, "output.", 7) != 0 || name[7] < '0' || name[7] > '9') return -1;
  errno = 0;
  long long n = strtoll(name + 7, &end, 10);
  if (errno || strcmp(end, ".log") != 0) return -1;
  log_name(canon, sizeof canon, n);
  return strcmp(canon, name) == 0 ? n : -1;
}

/* Continues with the highest existing index and deletes files beyond --log-max-files. */
static void scan_logs(void) {
  int fd = fcntl(logs_fd, F_DUPFD_CLOEXEC, 3);
  DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
  struct dirent *de;
  if (!d) setup_fail("read directory", "logs");
  cur_index = 0;
  while ((de = readdir(d)) != NULL)
    if (log_index(de->d_name) > cur_index) cur_index = log_index(de->d_name);
  rewinddir(d);
  while ((de = readdir(d)) != NULL) {
    long long i = log_index(de->d_name);
    if (i >= 0 && i <= cur_index - max_files && unlinkat(logs_fd, de->d_name, 0) != 0) { /* keep going */ }
  }
  closedir(d);
}

static long long parse_num(const char *opt, const char *s, long long min, long long max) {
  char *end;
  errno = 0;
  long long v = (s[0] >= '0' && s[0] <= '9') ? strtoll(s, &end, 10) : -1;
  if (v < 0 || errno || *end || v < min || v > max)
    usage("%s must be an integer between %lld and %lld, got \"%s\"", opt, min, max, s);
  return v;
}

static void child_fail(int fd, int code, const char *fmt, ...) {
  char b[MSG_MAX];
  va_list ap;
  va_start(ap, fmt);
  b[0] = (char)code;
  vsnprintf(b + 1, sizeof b - 1, fmt, ap);
  va_end(ap);
  if (write_all(fd, b, 1 + strlen(b + 1)) != 0) { /* the parent then sees a plain exit */ }
  _exit(code);
}

struct identity { const char *user, *group, *chroot; };

static int numeric_id(const char *s, unsigned *out) {
  char *end;
  if (!*s || strspn(s, "0123456789") != strlen(s)) return 0;
  unsigned long v = strtoul(s, &end, 10);
  if (v > 0x7fffffffUL) return 0;
  *out = (unsigned)v;
  return 1;
}

/* Resolves and takes on the task's identity; chroot happens between resolving and switching. */
static void become(int st_w, const struct identity *id, const char *cwd) {
  struct passwd *pw = NULL;
  unsigned uid = 0, gid = 0;
  int have_uid = 0, have_gid = 0;
  if (id->user) {
    if (numeric_id(id->user, &uid)) pw = getpwuid(uid);
    else if ((pw = getpwnam(id->user))) uid = pw->pw_uid;
    else child_fail(st_w, 1, "user %s: no such user", id->user);
    gid = pw ? pw->pw_gid : uid;
    have_uid = have_gid = 1;
  }
  if (id->group) {
    struct group *gr = NULL;
    if (!numeric_id(id->group, &gid)) {
      if (!(gr = getgrnam(id->group))) child_fail(st_w, 1, "group %s: no such group", id->group);
      gid = gr->gr_gid;
    }
    have_gid = 1;
  }
  char home[512] = "", name[256] = "";
  if (pw) {
    snprintf(home, sizeof home, "%s", pw->pw_dir ? pw->pw_dir : "/");
    snprintf(name, sizeof name, "%s", pw->pw_name);
  }
  if (id->chroot) {
    if (chroot(id->chroot) != 0) child_fail(st_w, 1, "chroot %s: %s", id->chroot, strerror(errno));
    if (!cwd && chdir("/") != 0) child_fail(st_w, 1, "chdir /: %s", strerror(errno));
  }
  if (cwd && chdir(cwd) != 0) child_fail(st_w, 1, "chdir %s: %s", cwd, strerror(errno));
  if (have_gid) {
    int ok = pw && !id->group ? initgroups(name, (gid_t)gid) : setgroups(0, NULL);
    if (ok != 0) child_fail(st_w, 1, "set supplementary groups: %s", strerror(errno));
    if (setgid((gid_t)gid) != 0) child_fail(st_w, 1, "setgid %u: %s", gid, strerror(errno));
  }
  if (have_uid) {
    if (setuid((uid_t)uid) != 0) child_fail(st_w, 1, "setuid %u: %s", uid, strerror(errno));
    if (pw && (setenv("HOME", home, 1) || setenv("USER", name, 1) || setenv("LOGNAME", name, 1)))
      child_fail(st_w, 1, "setenv: %s", strerror(errno));
  }
}

static void child(int out_w, int err_w, int st_w, char **cg, int ncg, const char *cwd, const struct identity *id,
                  char **prog) {
  struct sigaction sa = {.sa_handler = SIG_DFL};
  sigset_t none;
  char pid[32];
  sigemptyset(&sa.sa_mask);
  sigemptyset(&none);
  for (int s = 1; s < NSIG; s++)
    if (s != SIGKILL && s != SIGSTOP) sigaction(s, &sa, NULL);   /* EINVAL for libc-internal ones */
  if (sigprocmask(SIG_SETMASK, &none, NULL) != 0) child_fail(st_w, 1, "sigprocmask: %s", strerror(errno));
  if (setsid() < 0) child_fail(st_w, 1, "setsid: %s", strerror(errno));
  int pl = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
  for (int i = 0; i < ncg; i++) {
    int fd = open(cg[i], O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write_all(fd, pid, (size_t)pl) != 0 || close(fd) != 0)
      child_fail(st_w, 1, "cgroup %s: %s", cg[i], strerror(errno));
  }
  int null = open("/dev/null", O_RDONLY | O_CLOEXEC);   /* before a chroot that may lack it */
  become(st_w, id, cwd);
  if (null < 0 || dup2(null, 0) < 0 || dup2(out_w, 1) < 0 || dup2(err_w, 2) < 0)
    child_fail(st_w, 1, "redirect stdio: %s", strerror(errno));
  execvp(prog[0], prog);
  int e = errno;
  child_fail(st_w, e == ENOENT ? 127 : (e == EACCES || e == ENOEXEC) ? 126 : 1, "exec %s: %s", prog[0], strerror(e));
}

/* Reaps every exited child (the task and adopted orphans); records the task's exit. */
static void reap(pid_t task, int *task_done) {
  for (;;) {
    int st;
    pid_t p = waitpid(-1, &st, WNOHANG);
    if (p < 0 && errno == EINTR) continue;
    if (p <= 0) return;
    if (p != task || *task_done || !(WIFEXITED(st) || WIFSIGNALED(st))) continue;
    int sig = WIFSIGNALED(st) ? WTERMSIG(st) : 0, code = sig ? 128 + sig : WEXITSTATUS(st);
    char ts[40];
    struct jbuf f = {.n = 0}, e = {.n = 0};
    now_ts(ts);
    jraw(&f, "{\"exitCode\":%d,\"signal\":%d,\"finishedAt\":\"%s\"}\n", code, sig, ts);
    jraw(&e, "{\"event\":\"exited\",%s", f.p + 1);
    atomic_json("exit.json", &f);
    emit(&e);
    *task_done = 1;
  }
}

/* Field 22 (starttime) of /proc/PID/stat, parsed after the last ')'. */
static void proc_start_time(pid_t pid, char *out, size_t size) {
  char path[64], buf[2048];
  out[0] = '\0';
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  buf[read_full(fd, buf, sizeof buf - 1)] = '\0';
  close(fd);
  char *p = strrchr(buf, ')'), *save = NULL, *tok = NULL;
  if (!p) return;
  tok = strtok_r(p + 1, " ", &save);
  for (int field = 3; tok && field < 22; field++) tok = strtok_r(NULL, " ", &save);
  if (tok && strspn(tok, "0123456789") == strlen(tok)) snprintf(out, size, "%s", tok);
}

/* Reads both pipes until they are empty (they are non-blocking), closing them at EOF;
 * bounded, so a background process that keeps writing cannot delay the exit record. */
static void drain_pipes(struct pollfd *pf, const char *const *stream, char *chunk) {
  for (int k = 1; k < 3; k++) {
    for (int reads = 0; pf[k].fd >= 0 && reads < 64; reads++) {
      ssize_t n = read(pf[k].fd, chunk, CHUNK);
      if (n > 0) {
        handle_chunk(stream[k], chunk, (size_t)n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n == 0 || errno != EAGAIN) {
        close(pf[k].fd);
        pf[k].fd = -1;
      }
      break;
    }
  }
}

int main(int argc, char **argv) {
  const char *dir = NULL, *cwd = NULL;
  struct identity id = {NULL, NULL, NULL};
  char **cg = calloc((size_t)argc, sizeof *cg), **prog = NULL;
  int ncg = 0, i;
  sigset_t mask;

  for (int fd = 0; fd < 3; fd++)   /* make sure 0-2 are open so pipes never land there */
    if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) != fd) return 1;
  if (close_range(3, ~0U, 0) != 0)
    for (long fd = 3, max = sysconf(_SC_OPEN_MAX); fd < max && fd < 65536; fd++) close((int)fd);
  sigemptyset(&mask);
  sigaddset(&mask, SIGCHLD);
  sigaddset(&mask, SIGTERM);
  /* SIGCHLD/SIGTERM may arrive ignored (SIG_IGN would auto-reap or discard them): the
   * default disposition plus a blocked mask delivers them to the signalfd. */
  if (!cg || sigprocmask(SIG_BLOCK, &mask, NULL) != 0 || signal(SIGCHLD, SIG_DFL) == SIG_ERR ||
      signal(SIGTERM, SIG_DFL) == SIG_ERR || signal(SIGPIPE, SIG_IGN) == SIG_ERR ||
      signal(SIGINT, SIG_IGN) == SIG_ERR || signal(SIGHUP, SIG_IGN) == SIG_ERR) {
    perror("task-shim: setup");
    return 1;
  }

  for (i = 1; i < argc; i++) {
    const char *a = argv[i], *v = argv[i + 1];
    if (strcmp(a, "--") == 0) {
      prog = argv + i + 1;
      break;
    }
    if (strncmp(a, "--", 2) != 0) usage("unexpected argument \"%s\" (put the program after --)", a);
    if (!v) usage("option %s needs a value", a);
    if (strcmp(a, "--dir") == 0) dir = v;
    else if (strcmp(a, "--cwd") == 0) cwd = v;
    else if (strcmp(a, "--cgroup-procs") == 0) cg[ncg++] = argv[i + 1];
    else if (strcmp(a, "--user") == 0) id.user = v;
    else if (strcmp(a, "--group") == 0) id.group = v;
    else if (strcmp(a, "--chroot") == 0) id.chroot = v;
    else if (strcmp(a, "--log-max-bytes") == 0) max_bytes = parse_num(a, v, 1024, 1LL << 50);
    else if (strcmp(a, "--log-max-files") == 0) max_files = parse_num(a, v, 1, 1000000);
    else usage("unknown option %s", a);
    i++;
  }
  if (!dir) usage("--dir is required");
  if (dir[0] != '/') usage("--dir must be an absolute path, got \"%s\"", dir);
  if (!prog || !prog[0]) usage("no program given after --");

  if ((dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) setup_fail("open", dir);
  if (mkdirat(dir_fd, "logs", 0755) != 0 && errno != EEXIST) setup_fail("mkdir", "logs");
  if ((logs_fd = openat(dir_fd, "logs", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) setup_fail("open", "logs");
  scan_logs();
  if (open_log() != 0) { /* retried on the first record */ }
  static const char *const stale[] = {"start.json", "exit.json", "start.json.tmp", "exit.json.tmp"};
  for (size_t k = 0; k < sizeof stale / sizeof *stale; k++)   /* DIR reused: files must be this run's */
    if (unlinkat(dir_fd, stale[k], 0) != 0 && errno != ENOENT) setup_fail("remove", stale[k]);

  int out[2], err[2], st[2], sfd;
  char *chunk = malloc(CHUNK);
  if (!chunk) setup_fail("allocate", "buffer");
  if (pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC) || pipe2(st, O_CLOEXEC)) setup_fail("create", "pipes");
  if (fcntl(out[0], F_SETFL, O_NONBLOCK) || fcntl(err[0], F_SETFL, O_NONBLOCK)) setup_fail("configure", "pipes");
  if ((sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC)) < 0) setup_fail("create", "signalfd");
  if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0) setup_fail("prctl", "PR_SET_CHILD_SUBREAPER");
  int fl = fcntl(1, F_GETFL);
  if (fl < 0 || fcntl(1, F_SETFL, fl | O_NONBLOCK) != 0) { /* events may then block; still usable */ }

  pid_t pid = fork();
  if (pid < 0) setup_fail("fork", prog[0]);
  if (pid == 0) child(out[1], err[1], st[1], cg, ncg, cwd, &id, prog);
  close(out[1]);
  close(err[1]);
  close(st[1]);
  if (chdir("/") != 0) { /* only matters for unmounting; all paths are fds */ }

  char msg[MSG_MAX + 1];
  size_t mn = read_full(st[0], msg, MSG_MAX);   /* EOF without data: exec succeeded */
  close(st[0]);
  if (mn > 0) {   /* the child failed before exec; it has _exit()ed already or will now */
    msg[mn] = '\0';
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    start_failed((unsigned char)msg[0], msg + 1);
    int none = 1;
    reap(-1, &none);
    return 0;
  }

  char start[32], ts[40];
  struct jbuf f = {.n = 0}, e = {.n = 0};
  proc_start_time(pid, start, sizeof start);
  now_ts(ts);
  jraw(&f, "{\"pid\":%d,\"pgid\":%d,\"shimPid\":%d,\"startTime\":\"%s\",\"startedAt\":\"%s\"}\n",
       (int)pid, (int)pid, (int)getpid(), start, ts);
  jraw(&e, "{\"event\":\"started\",%s", f.p + 1);
  atomic_json("start.json", &f);
  emit(&e);

  struct pollfd pf[3] = {{sfd, POLLIN, 0}, {out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  const char *const stream[3] = {"", "stdout", "stderr"};
  int task_done = 0;
  while (!task_done || pf[1].fd >= 0 || pf[2].fd >= 0) {
    if (poll(pf, 3, -1) < 0) {
      struct timespec pause = {0, 10 * 1000 * 1000};
      if (errno != EINTR) nanosleep(&pause, NULL);   /* ENOMEM: try again shortly */
      continue;
    }
    if (pf[0].revents) {
      struct signalfd_siginfo si;
      while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
        if (si.ssi_signo != SIGTERM || released) continue;
        struct jbuf r = {.n = 0};
        released = 1;   /* stop writing logs; keep draining so writers never block */
        if (log_fd >= 0) close(log_fd);
        log_fd = -1;
        jraw(&r, "{\"event\":\"released\"}\n");
        emit(&r);
      }
      /* Log what the task wrote before it exited ahead of recording the exit, so a
       * terminated task's output is complete in the files (background writers aside). */
      if (!task_done) drain_pipes(pf, stream, chunk);
      reap(pid, &task_done);
    }
    for (int k = 1; k < 3; k++) {
      if (pf[k].fd < 0 || !pf[k].revents) continue;
      ssize_t n = read(pf[k].fd, chunk, CHUNK);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n > 0) {
        handle_chunk(stream[k], chunk, (size_t)n);
        continue;
      }
      close(pf[k].fd);   /* EOF (or a read error, treated alike) */
      pf[k].fd = -1;
    }
  }
  reap(pid, &task_done);
  if (log_fd >= 0) close(log_fd);
  return 0;
}
