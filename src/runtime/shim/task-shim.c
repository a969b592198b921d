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
 * Usage: task-shim --spawner   (see spawner.c: starts shims for the executor)
 *        task-shim --dir DIR [--log-max-bytes N] [--log-max-files N] [--plain-logs 0|1] [--cwd PATH]
 *                  [--cgroup-procs FILE]... [--user U] [--group G] [--chroot DIR] [--gate 0|1]
 *                  [--caps LIST] [--no-new-privs 0|1] [--seccomp default|unconfined] [--seccomp-bpf FILE]
 *                  [--rlimit NAME=SOFT:HARD]... [--privs-helper PATH] -- PROGRAM [ARG...]
 *        task-shim --features   (prints the privilege features of this build, see privileges.h)
 *        task-shim --seccomp-names NAME,...   (prints the syscall names libseccomp does not know)
 *        task-shim --seccomp-export FILE FILTER-OPTIONS   (writes that filter for --seccomp-bpf FILE,
 *                  compiled once by the executor; see privileges.h)
 * --gate 1: PROGRAM may run only once "go\n" arrives on stdin: everything else is set up
 * first, the task's process included (forked, in its cgroups, its rlimits and bounding set
 * applied, its seccomp filter compiled, its identity resolved), and that process waits for
 * the line immediately before exec (see child). On EOF or anything else it exits without
 * exec, and the shim exits 0 without records, removing the cgroups it joined (a setup
 * failure of the task's process is reported only after "go" too; one of the shim itself,
 * e.g. DataDirFull, at once, and the waiting process is killed).
 * --privs-helper: PATH (the task-privs binary) is opened read-only and left open for PROGRAM as
 * fd TASK_PRIVS_FD (200), so that nsenter can exec it as /proc/self/fd/200 inside another mount
 * namespace (see task-privs.c); and a pipe's write end as fd TASK_PRIVS_REPORT_FD (201), on
 * which task-privs says that the program died before it could exec (privileges.h): PROGRAM's
 * death by a signal is then recorded as that start failure (exit code 128+N, signal N).
 * The privilege options are described in privileges.h; they apply to the task only.
 * --user/--group take a name or a numeric id (0..4294967294), resolved on the host
 * before --chroot. A user name also sets the supplementary groups (initgroups), HOME,
 * USER and LOGNAME; a numeric uid without a passwd entry runs with gid 0 (as Docker
 * does) and no supplementary groups; --group overrides the gid either way.
 *
 * Files (DIR is absolute and must exist; <ts> = RFC 3339 UTC with 9 fractional digits):
 *   DIR/start.json {"pid":P,"pgid":P,"shimPid":S,"startTime":"<field 22 of /proc/P/stat>",
 *                   "startedAt":"<ts>"}
 *   DIR/exit.json  {"exitCode":C,"signal":S,"finishedAt":"<ts>"}, or when PROGRAM could not
 *                  be started {"exitCode":C,"signal":S,"startError":"msg","finishedAt":"<ts>"}
 *                  (plus "reason":"DataDirFull" when DIR had no room for the records; S is 0
 *                  unless the task's process was killed by signal S before it could exec,
 *                  then C is 128+S).
 *                  Both are written atomically: NAME.tmp, fsync, rename, fsync DIR.
 *   DIR/logs/output.<N>.log  CRI log format, one record per line:
 *                  "<ts> <stdout|stderr> <F|P> <payload>\n"; F ends a line, P is a partial
 *                  line (payload <= 16384 bytes, raw bytes). N only grows, files are never
 *                  renamed, at most --log-max-files of them are kept, and none is ever
 *                  longer than --log-max-bytes: a line that does not fit in a whole file
 *                  is split across files as P records.
 *   DIR/stdout.log, DIR/stderr.log  with --plain-logs 1 only: the raw bytes of each stream,
 *                  appended, each file ending at --log-max-files x --log-max-bytes bytes.
 * Full disk: before starting PROGRAM the shim allocates (posix_fallocate) start.json.tmp
 *   and exit.json.tmp, so both records are written into blocks it already owns. If DIR
 *   has no room for them, PROGRAM is not started (start failure, reason DataDirFull).
 *   If a record still cannot be written, the shim says so on stderr and in its event
 *   ("recordError"), keeps the record and retries every second while it lives; SIGTERM
 *   (the executor is done with the task) ends that.
 * Shim stdout: one JSON object per line: {"event":"started"|"start-failed"|"exited"|
 *   "released",...}; dropped when the reader is slow or gone.
 * Shim exit status: 0 (also when PROGRAM failed to start), 1 if the shim could not set
 * itself up (reported on stderr and, if possible, as a start failure), 2 on usage errors.
 * TASK_SHIM_TEST_STALL_MS (tests only): sleep that long before forking PROGRAM, to
 * reproduce a shim that stalls before exec; removed from PROGRAM's environment.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/file.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "privileges.h"
#include "spawner.h"

#define CHUNK (64 * 1024)   /* bytes read from a pipe at once */
#define MAX_PAYLOAD 16384   /* longest record payload; longer lines become P records */
#define MSG_MAX 512         /* start error message (fits one atomic pipe write) */
#define RESERVE_BYTES 4096  /* room allocated up front for each of start.json and exit.json */
#define RETRY_MS 1000       /* how often a record that could not be written is retried */
#define TASK_PRIVS_FD 200   /* see --privs-helper and task-privs.c */
#define MAX_ID 4294967294ULL /* largest uid/gid: (uid_t)-1 means "unchanged" to setuid(2) */
/* The status pipe's first byte (see spawn_task) when the task's process does not report a
 * failure code (1-127) first: */
#define GATE_CLOSED 0       /* the gate closed: it leaves without exec */
#define GOING 0xff          /* it passed its gate, DIR is prepared: it execs now */

struct jbuf { char p[4096]; size_t n; };   /* bounded JSON text; appends truncate */

/* The longest document is a start-failed event: MSG_MAX bytes that may each escape to 6
 * ("\u00XX") plus keys, a reason, a record error (< 200 bytes) and a timestamp; jraw
 * truncates rather than overflow, but a truncated document would not be valid JSON.
 * Every document must also fit one atomic pipe write, so that event lines never
 * interleave, and the space reserved for its file. */
_Static_assert(sizeof ((struct jbuf *)0)->p >= 6 * MSG_MAX + 512, "jbuf too small for a start failure");
_Static_assert(sizeof ((struct jbuf *)0)->p <= PIPE_BUF, "an event line must be one atomic pipe write");
_Static_assert(sizeof ((struct jbuf *)0)->p <= RESERVE_BYTES, "a record must fit its reserved space");

/* A record file and the space reserved for it; `pending` while it waits to be written. */
struct record {
  const char *name, *tmp;
  int fd;            /* the reserved, preallocated NAME.tmp; -1 once used */
  int staged;        /* NAME.tmp holds the body, durably (see stage) */
  int pending, last_errno;
  struct jbuf body;
};

static int dir_fd = -1, logs_fd = -1, log_fd = -1;
static long long max_bytes = 10485760, max_files = 10, cur_index, cur_size;
static unsigned long long dropped;   /* output bytes lost since the last good write */
static int drop_errno, released;
static struct record start_rec = {"start.json", "start.json.tmp", -1, 0, 0, 0, {"", 0}};
static struct record exit_rec = {"exit.json", "exit.json.tmp", -1, 0, 0, 0, {"", 0}};

/* --plain-logs: the raw bytes of one stream also appended to DIR/<name>, as the original
 * task-executor wrote them, so scripts that `cat DIR/stdout.log` keep working. Each file
 * stops growing at plain_cap bytes (--log-max-files x --log-max-bytes, what the CRI files
 * of the task may hold); a write that fails (a full disk) is undone and its bytes are
 * counted as dropped, never waited for. The CRI log says when the limit was reached (once
 * per shim) and how many bytes were dropped (once writing works again). */
struct plain_log {
  const char *name, *stream;
  int fd;                       /* -1: not open (yet, or again after a failure) */
  long long size;               /* bytes in the file */
  unsigned long long dropped;   /* bytes lost since the last good write */
  int drop_errno, capped;       /* capped: the limit was reported */
};
static int plain_logs;
static long long plain_cap;
static struct plain_log plain[2] = {{"stdout.log", "stdout", -1, 0, 0, 0, 0}, {"stderr.log", "stderr", -1, 0, 0, 0, 0}};

static void usage(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("task-shim: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputs(" (usage: task-shim --dir DIR [--log-max-bytes N] [--log-max-files N] [--plain-logs 0|1] [--cwd PATH] "
        "[--cgroup-procs FILE]... [--user U] [--group G] [--chroot DIR] [--caps LIST] [--no-new-privs 0|1] "
        "[--seccomp default|unconfined] [--seccomp-bpf FILE] [--rlimit NAME=SOFT:HARD]... [--privs-helper PATH] -- PROGRAM [ARG...])\n", stderr);
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

static long long monotonic_ms(void) {
  struct timespec ts = {0, 0};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
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

/* Event line on fd 1. fd 1 is the executor's pipe, shared with nobody else, but its
 * file description is not ours to make non-blocking: a poll decides instead. A line is
 * at most PIPE_BUF bytes, so it goes out whole when POLLOUT says there is room; a slow
 * or gone reader loses it. */
static void emit(const struct jbuf *b) {
  struct pollfd p = {1, POLLOUT, 0};
  if (poll(&p, 1, 0) != 1 || !(p.revents & POLLOUT)) return;
  ssize_t w;
  do w = write(1, b->p, b->n); while (w < 0 && errno == EINTR);
}

/* ---- start.json / exit.json: reserved up front, written atomically, held on failure ---- */

/* Creates NAME.tmp with RESERVE_BYTES allocated; returns 0 or an errno value. */
static int reserve(struct record *r) {
  int fd = openat(dir_fd, r->tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return errno;
  int e = posix_fallocate(fd, 0, RESERVE_BYTES);   /* returns the error, leaves errno alone */
  if (e) {
    close(fd);
    if (unlinkat(dir_fd, r->tmp, 0) != 0) { /* the next start truncates it anyway */ }
    return e;
  }
  r->fd = fd;
  return 0;
}

static int pwrite_all(int fd, const char *p, size_t n) {
  for (off_t off = 0; n > 0;) {
    ssize_t w = pwrite(fd, p, n, off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return w < 0 ? errno : ENOSPC;
    p += w;
    n -= (size_t)w;
    off += w;
  }
  return 0;
}

/* The body into the reserved blocks (or, once they are gone, a new NAME.tmp), fsync.
 * Returns 0 or an errno value; NAME is not touched. A failed write keeps the reserved
 * file for the next attempt. */
static int stage(struct record *r) {
  if (r->fd < 0 && (r->fd = openat(dir_fd, r->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0) return errno;
  int e = pwrite_all(r->fd, r->body.p, r->body.n);
  if (!e && (ftruncate(r->fd, (off_t)r->body.n) != 0 || fsync(r->fd) != 0)) e = errno;
  r->staged = !e;
  return e;
}

/* One attempt: stage (unless the body is staged already), rename over NAME, fsync DIR.
 * Returns 0 or an errno value. */
static int try_save(struct record *r) {
  int e = r->staged ? 0 : stage(r);
  r->staged = 0;
  if (e) return e;
  close(r->fd);
  r->fd = -1;
  if (renameat(dir_fd, r->tmp, dir_fd, r->name) != 0) {
    e = errno;   /* e.g. NAME.tmp was removed: the next attempt starts over */
    if (unlinkat(dir_fd, r->tmp, 0) != 0) { /* nothing more we can do */ }
    return e;
  }
  if (fsync(dir_fd) != 0) { /* the rename is done; durability is best effort */ }
  return 0;
}

/* Writes the record or keeps it pending; every new kind of failure and the eventual
 * success after one are reported on stderr. Returns 0 or an errno value. */
static int save(struct record *r) {
  int e = try_save(r);
  if (e && e != r->last_errno)
    fprintf(stderr, "task-shim: cannot write %s: %s; keeping it and retrying every %d ms\n", r->name, strerror(e),
            RETRY_MS);
  else if (!e && r->pending)
    fprintf(stderr, "task-shim: wrote %s after earlier failures\n", r->name);
  r->pending = e != 0;
  r->last_errno = e;
  return e;
}

static void retry_pending(void) {
  static long long last;
  long long now = monotonic_ms();
  if (now - last < RETRY_MS) return;
  last = now;
  if (start_rec.pending) save(&start_rec);
  if (exit_rec.pending) save(&exit_rec);
}

/* The event for a record: {"event":EV,<the record's fields>[,"recordError":"..."]}. */
static void emit_record(const char *event, const struct record *r, int save_errno) {
  struct jbuf e = {.n = 0};
  /* body is "{...}\n": reuse its fields between the braces */
  jraw(&e, "{\"event\":\"%s\",%.*s", event, (int)(r->body.n > 3 ? r->body.n - 3 : 0), r->body.p + 1);
  if (save_errno) {
    char msg[200];
    snprintf(msg, sizeof msg, "cannot write %s: %s", r->name, strerror(save_errno));
    jraw(&e, ",\"recordError\":");
    jstr(&e, msg);
  }
  jraw(&e, "}\n");
  emit(&e);
}

/* Records a start failure in exit.json and as a start-failed event; sig: the signal that
 * killed the task's process before it could exec, else 0. */
static void start_failed(int code, int sig, const char *reason, const char *msg) {
  char ts[40];
  struct jbuf *f = &exit_rec.body;
  if (start_rec.fd >= 0) {   /* there will be no start.json: give its room back */
    close(start_rec.fd);
    start_rec.fd = -1;
    if (unlinkat(dir_fd, start_rec.tmp, 0) != 0) { /* the next start truncates it anyway */ }
  }
  now_ts(ts);
  f->n = 0;
  jraw(f, "{\"exitCode\":%d,\"signal\":%d,", code, sig);
  if (reason) jraw(f, "\"reason\":\"%s\",", reason);
  jraw(f, "\"startError\":");
  jstr(f, msg);
  jraw(f, ",\"finishedAt\":\"%s\"}\n", ts);
  emit_record("start-failed", &exit_rec, dir_fd >= 0 ? save(&exit_rec) : 0);
}

/* errno values meaning "the data dir has no room": the start is refused as DataDirFull. */
static int no_room(int e) {
  return e == ENOSPC || e == EDQUOT;
}

/* The task's process while it waits for its go (see spawn_task), and the options it was
 * started with: a failure of the shim's own set-up meanwhile ends it first. */
static pid_t waiting_task;
static const struct task_options *task_opts;
static void remove_cgroups(const struct task_options *o);

/* The task's process has not been let go (it waits in wait_for_go): it never will. It goes,
 * and the cgroups it joined (it was their only member) go with it. */
static void end_waiting_task(void) {
  int status;
  if (waiting_task <= 0) return;
  kill(waiting_task, SIGKILL);
  while (waitpid(waiting_task, &status, 0) < 0 && errno == EINTR) {}
  waiting_task = 0;
  remove_cgroups(task_opts);
}

static void setup_fail(const char *what, const char *arg) {
  char msg[MSG_MAX];
  int e = errno;
  end_waiting_task();
  snprintf(msg, sizeof msg, "task-shim: %s %s: %s%s", what, arg, strerror(e),
           no_room(e) ? " (the data dir is full: the task was not started)" : "");
  fprintf(stderr, "%s\n", msg);
  start_failed(1, 0, no_room(e) ? "DataDirFull" : NULL, msg);
  exit(1);
}

/* ---- log files ---- */

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

/* Moves on to the next file and deletes the one that falls out of --log-max-files. */
static void rotate(void) {
  char old[64];
  if (log_fd >= 0) close(log_fd);
  log_fd = -1;
  cur_index++;
  log_name(old, sizeof old, cur_index - max_files);
  if (cur_index - max_files >= 0 && unlinkat(logs_fd, old, 0) != 0 && errno != ENOENT) { /* retry never */ }
}

/* Appends one record to the open file with a single writev(2); returns 0 or an errno value. */
static int append(const char *ts, const char *stream, char tag, const char *p, size_t n) {
  static char nl = '\n';
  char hdr[64];
  int h = snprintf(hdr, sizeof hdr, "%s %s %c ", ts, stream, tag);
  long long len = h + (long long)n + 1;
  struct iovec iov[3] = {{hdr, (size_t)h}, {(void *)p, n}, {&nl, 1}};
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

/* Writes one record so that no file ever exceeds --log-max-bytes: a record that does not
 * fit in the current file goes to the next one, and one that would not fit even in an
 * empty file fills files to the byte with P pieces. Returns 0 or an errno value; *left
 * is the payload not written. */
static int write_record(const char *ts, const char *stream, char tag, const char *p, size_t n, size_t *left) {
  long long h = (long long)strlen(ts) + (long long)strlen(stream) + 4;   /* "<ts> <stream> <tag> " */
  for (;;) {
    *left = n;
    if (log_fd < 0) {
      int e = open_log();
      if (e) return e;
    }
    long long room = max_bytes - cur_size - h - 1;   /* payload bytes that fit in this file */
    if ((long long)n <= room) return append(ts, stream, tag, p, n);
    if (h + 1 + (long long)n <= max_bytes || room < 1) {   /* fits a fresh file, or nothing fits here */
      rotate();
      continue;
    }
    int e = append(ts, stream, 'P', p, (size_t)room);
    if (e) return e;
    p += room;
    n -= (size_t)room;
    rotate();
  }
}

static void log_out(const char *ts, const char *stream, char tag, const char *p, size_t n) {
  size_t left;
  if (dropped) {
    char msg[200];
    int m = snprintf(msg, sizeof msg, "[task-shim] dropped %llu bytes of output: %s", dropped, strerror(drop_errno));
    if (m >= (int)sizeof msg) m = sizeof msg - 1;
    int e = write_record(ts, "stderr", 'F', msg, (size_t)m, &left);
    if (e) {
      dropped += n + (tag == 'F');
      drop_errno = e;
      return;
    }
    dropped = 0;
  }
  int e = write_record(ts, stream, tag, p, n, &left);
  if (e) {
    dropped += left + (tag == 'F');
    drop_errno = e;
  }
}

/* ---- --plain-logs: DIR/stdout.log and DIR/stderr.log ---- */

static int open_plain(struct plain_log *pl) {
  struct stat st;
  int fd = openat(dir_fd, pl->name, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return errno;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return e;
  }
  pl->fd = fd;
  pl->size = st.st_size;
  return 0;
}

/* Appends the raw bytes of one read, up to the cap; a failed write is cut back so the
 * file holds only whole writes, and the bytes are counted as dropped. Notes go to the
 * CRI log (ts is this read's time). */
static void plain_out(struct plain_log *pl, const char *ts, const char *p, size_t n) {
  char msg[200];
  int e = pl->fd < 0 ? open_plain(pl) : 0;
  long long room = pl->fd < 0 ? 0 : plain_cap - pl->size;
  size_t k = e ? 0 : (long long)n < room ? n : (size_t)(room > 0 ? room : 0);
  if (!e && k > 0) {
    ssize_t w;
    do w = write(pl->fd, p, k); while (w < 0 && errno == EINTR);
    if (w == (ssize_t)k) {
      pl->size += (long long)k;
    } else {
      e = w < 0 ? errno : ENOSPC;
      if (w > 0 && ftruncate(pl->fd, pl->size) != 0) { /* reopening re-reads the size */ }
      close(pl->fd);
      pl->fd = -1;
    }
  }
  if (e) {
    pl->dropped += n;
    pl->drop_errno = e;
    return;
  }
  if (pl->dropped) {
    snprintf(msg, sizeof msg, "[task-shim] dropped %llu bytes of %s: %s", pl->dropped, pl->name, strerror(pl->drop_errno));
    log_out(ts, "stderr", 'F', msg, strlen(msg));
    pl->dropped = 0;
  }
  if (k < n && !pl->capped) {
    pl->capped = 1;
    snprintf(msg, sizeof msg, "[task-shim] %s reached its limit of %lld bytes; the rest of %s is only in logs/",
             pl->name, plain_cap, pl->stream);
    log_out(ts, "stderr", 'F', msg, strlen(msg));
  }
}

static void close_plain(void) {
  for (int k = 0; k < 2; k++) {
    if (plain[k].fd >= 0) close(plain[k].fd);
    plain[k].fd = -1;
  }
}

/* Splits one read into F records (complete lines) and P records (the rest, or pieces of
 * lines longer than MAX_PAYLOAD). Nothing is kept between reads. */
static void handle_chunk(const char *stream, char *p, size_t n) {
  char ts[40];
  if (released) return;
  now_ts(ts);
  if (plain_logs) plain_out(&plain[strcmp(stream, "stderr") == 0], ts, p, n);
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

/* ---- the task process: identity, setup, exec ---- */

static long long parse_num(const char *opt, const char *s, long long min, long long max) {
  char *end;
  errno = 0;
  long long v = (s[0] >= '0' && s[0] <= '9') ? strtoll(s, &end, 10) : -1;
  if (v < 0 || errno || *end || v < min || v > max)
    usage("%s must be an integer between %lld and %lld, got \"%s\"", opt, min, max, s);
  return v;
}

/* The child's side of --gate 1: set while it has not passed the gate. */
static int gate_pending;
/* The child's end of the pipe on which the shim says DIR is prepared (see spawn_task); -1 once it did. */
static int prepared_fd = -1;
/* --privs-helper: the report pipe of task-privs (TASK_PRIVS_REPORT_FD), both ends; -1 without. */
static int privs_report[2] = {-1, -1};

/* Waits on the gate (stdin) for "go\n": 1 when it came, 0 on EOF or anything else. */
static int gate_opens(void) {
  char buf[3];
  return read_full(STDIN_FILENO, buf, sizeof buf) == sizeof buf && memcmp(buf, "go\n", 3) == 0;
}

/* Waits at the gate (the shim's stdin, inherited; --gate 1) for "go\n", then until the shim
 * has prepared DIR. A closed gate (EOF or anything else): the task must not exist: tells
 * the shim (GATE_CLOSED) and leaves without exec. No word from the shim: it could not
 * prepare DIR (it reports why, and kills this process) or it is gone: leaves too. */
static void wait_for_go(int st_w) {
  char buf[1];
  if (gate_pending) {
    gate_pending = 0;
    if (!gate_opens()) {
      const char closed = GATE_CLOSED;
      if (write_all(st_w, &closed, 1) != 0) { /* the shim then sees an end without a word */ }
      _exit(0);
    }
  }
  if (prepared_fd >= 0) {
    int fd = prepared_fd;
    prepared_fd = -1;
    if (read_full(fd, buf, 1) != 1) _exit(0);
    close(fd);
  }
}

/* Reports why the task cannot start (its exit code, then the message) and exits. A failure
 * before the gate is reported only once the gate opens: until then the task does not exist. */
static void child_fail(int fd, int code, const char *fmt, ...) {
  char b[MSG_MAX];
  va_list ap;
  if (gate_pending || prepared_fd >= 0) wait_for_go(fd);
  va_start(ap, fmt);
  b[0] = (char)code;
  vsnprintf(b + 1, sizeof b - 1, fmt, ap);
  va_end(ap);
  if (write_all(fd, b, 1 + strlen(b + 1)) != 0) { /* the parent then sees a plain exit */ }
  _exit(code);
}

struct identity { const char *user, *group, *chroot; };

/* A numeric id: 1 (stored in *out), 0 when s is a name, -1 when it is out of range. */
static int numeric_id(const char *s, unsigned *out) {
  char *end;
  if (!*s || strspn(s, "0123456789") != strlen(s)) return 0;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno == ERANGE || v > MAX_ID) return -1;
  *out = (unsigned)v;
  return 1;
}

/* The task's identity, resolved on the host, before --chroot and before the gate (the user
 * and group databases are files to read: the slow part), and taken on after the gate. */
struct resolved_identity {
  unsigned uid, gid;
  int have_uid, have_gid, entry;   /* entry: the user has a passwd entry (home, name) */
  gid_t *groups;                   /* supplementary groups (a user name's, as initgroups(3)) */
  int ngroups;
  char home[512], name[256];
};

static void resolve_identity(int st_w, const struct identity *id, struct resolved_identity *r) {
  struct passwd *pw = NULL;
  if (id->user) {
    int numeric = numeric_id(id->user, &r->uid);
    if (numeric < 0) child_fail(st_w, 1, "user %s: a numeric uid must be at most %llu", id->user, MAX_ID);
    if (numeric) pw = getpwuid((uid_t)r->uid);
    else if ((pw = getpwnam(id->user))) r->uid = pw->pw_uid;
    else child_fail(st_w, 1, "user %s: no such user", id->user);
    r->gid = pw ? pw->pw_gid : 0;   /* a uid without a passwd entry: group root, as Docker does */
    r->have_uid = r->have_gid = 1;
  }
  if (id->group) {
    struct group *gr = NULL;
    int numeric = numeric_id(id->group, &r->gid);
    if (numeric < 0) child_fail(st_w, 1, "group %s: a numeric gid must be at most %llu", id->group, MAX_ID);
    if (!numeric) {
      if (!(gr = getgrnam(id->group))) child_fail(st_w, 1, "group %s: no such group", id->group);
      r->gid = gr->gr_gid;
    }
    r->have_gid = 1;
  }
  if (!pw) return;
  r->entry = 1;
  snprintf(r->home, sizeof r->home, "%s", pw->pw_dir ? pw->pw_dir : "/");
  snprintf(r->name, sizeof r->name, "%s", pw->pw_name);
  if (id->group) return;   /* --group: no supplementary groups */
  for (int size = 32;;) {
    gid_t *groups = size <= NGROUPS_MAX ? realloc(r->groups, (size_t)size * sizeof *groups) : NULL;
    if (!groups) child_fail(st_w, 1, "supplementary groups of %s: %s", r->name, size <= NGROUPS_MAX ? strerror(ENOMEM) : "too many");
    r->groups = groups;
    int n = size;
    if (getgrouplist(r->name, (gid_t)r->gid, groups, &n) >= 0) {
      r->ngroups = n;
      return;
    }
    size = n > size ? n : 2 * size;   /* n: how many there are */
  }
}

/* Takes on the resolved identity; chroot happens between resolving and switching. */
static void take_identity(int st_w, const struct identity *id, const struct resolved_identity *r, const char *cwd) {
  if (id->chroot) {
    if (chroot(id->chroot) != 0) child_fail(st_w, 1, "chroot %s: %s%s", id->chroot, strerror(errno), privilege_hint(errno, "chroot"));
    if (!cwd && chdir("/") != 0) child_fail(st_w, 1, "chdir /: %s", strerror(errno));
  }
  if (cwd && chdir(cwd) != 0) child_fail(st_w, 1, "chdir %s: %s", cwd, strerror(errno));
  if (r->have_gid) {
    if (setgroups((size_t)r->ngroups, r->groups) != 0)
      child_fail(st_w, 1, "set supplementary groups: %s%s", strerror(errno), privilege_hint(errno, "setgroups"));
    if (setgid((gid_t)r->gid) != 0) child_fail(st_w, 1, "setgid %u: %s%s", r->gid, strerror(errno), privilege_hint(errno, "setgid"));
  }
  if (r->have_uid) {
    if (setuid((uid_t)r->uid) != 0) child_fail(st_w, 1, "setuid %u: %s%s", r->uid, strerror(errno), privilege_hint(errno, "setuid"));
    if (r->entry && (setenv("HOME", r->home, 1) || setenv("USER", r->name, 1) || setenv("LOGNAME", r->name, 1)))
      child_fail(st_w, 1, "setenv: %s", strerror(errno));
  }
}

struct task_options {
  const char *dir, *cwd, *privs_helper;
  struct identity id;
  struct privileges priv;
  char **cg, **prog;
  int ncg, gate;
};

/* Joins the task's cgroups (--cgroup-procs FILE...). On cgroup v1 the process writes "0" to
 * the `tasks` file beside FILE instead: it moves the calling thread only (the whole process:
 * it has just been forked from a single-threaded shim), which the kernel does without its
 * global threadgroup lock. Taking that lock (any write of a pid to cgroup.procs) waits for an
 * RCU grace period: 5 ms on an idle machine, 10-40 ms on a busy one, the largest single cost
 * of a start. cgroup v2 has no `tasks` file: the pid goes into FILE. */
static void join_cgroups(int st_w, const struct task_options *o) {
  static const char procs[] = "cgroup.procs";
  char pid[32], tasks[PATH_MAX];
  int pl = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
  for (int i = 0; i < o->ncg; i++) {
    const char *file = o->cg[i];
    size_t n = strlen(file), k = sizeof procs - 1;
    int fd = -1, own = 0;
    if (n > k && n - k < sizeof tasks - 6 && strcmp(file + n - k, procs) == 0 && file[n - k - 1] == '/') {
      snprintf(tasks, sizeof tasks, "%.*stasks", (int)(n - k), file);
      if ((fd = open(tasks, O_WRONLY | O_CLOEXEC)) >= 0) own = 1;
      else if (errno != ENOENT) child_fail(st_w, 1, "cgroup %s: %s", tasks, strerror(errno));
    }
    if (!own) fd = open(file, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write_all(fd, own ? "0\n" : pid, own ? 2 : (size_t)pl) != 0 || close(fd) != 0)
      child_fail(st_w, 1, "cgroup %s: %s", own ? tasks : file, strerror(errno));
  }
}

/* The task process. Everything slow is done before the gate (--gate 1): cgroup membership,
 * rlimits, the bounding set, compiling the seccomp filter, resolving the identity; after it
 * only a few syscalls remain: loading the filter, chroot, the identity and capabilities,
 * stdio, exec. The filter is loaded after the gate because a profile may deny the calls the
 * wait makes; before the identity change because without no_new_privs only a process with
 * CAP_SYS_ADMIN may load one. */
static void child(int out_w, int err_w, int st_w, int prepared_r, const struct task_options *o) {
  struct sigaction sa = {.sa_handler = SIG_DFL};
  sigset_t none;
  gate_pending = o->gate;
  prepared_fd = prepared_r;
  sigemptyset(&sa.sa_mask);
  sigemptyset(&none);
  for (int s = 1; s < NSIG; s++)
    if (s != SIGKILL && s != SIGSTOP) sigaction(s, &sa, NULL);   /* EINVAL for libc-internal ones */
  if (sigprocmask(SIG_SETMASK, &none, NULL) != 0) child_fail(st_w, 1, "sigprocmask: %s", strerror(errno));
  if (setsid() < 0) child_fail(st_w, 1, "setsid: %s", strerror(errno));
  join_cgroups(st_w, o);
  int null = open("/dev/null", O_RDONLY | O_CLOEXEC);   /* before a chroot that may lack it */
  if (o->privs_helper) {
    int h = open(o->privs_helper, O_RDONLY | O_CLOEXEC);
    if (h < 0 || dup2(h, TASK_PRIVS_FD) < 0) child_fail(st_w, 1, "open %s: %s", o->privs_helper, strerror(errno));
    if (dup2(privs_report[1], TASK_PRIVS_REPORT_FD) < 0) child_fail(st_w, 1, "dup2: %s", strerror(errno));
  }
  char msg[PRIV_MSG_MAX];
  struct resolved_identity who = {.groups = NULL};
  /* The user and group databases are read before the task's rlimits apply (a small nofile
   * limit would make a user look unknown). */
  resolve_identity(st_w, &o->id, &who);
  if (privileges_prepare(&o->priv, msg, sizeof msg) != 0) child_fail(st_w, 1, "%s", msg);
  wait_for_go(st_w);
  const unsigned char going = GOING;   /* the shim writes start.json while this process execs */
  if (write_all(st_w, (const char *)&going, 1) != 0) { /* unreachable: a gone shim's pipe raises SIGPIPE, which ends us */ }
  if (privileges_load_filter(msg, sizeof msg) != 0) child_fail(st_w, 1, "%s", msg);
  take_identity(st_w, &o->id, &who, o->cwd);
  if (privileges_after_identity(&o->priv, msg, sizeof msg) != 0) child_fail(st_w, 1, "%s", msg);
  if (null < 0 || dup2(null, 0) < 0 || dup2(out_w, 1) < 0 || dup2(err_w, 2) < 0)
    child_fail(st_w, 1, "redirect stdio: %s", strerror(errno));
  execvp(o->prog[0], o->prog);
  int e = errno;
  child_fail(st_w, e == ENOENT ? 127 : (e == EACCES || e == ENOEXEC) ? 126 : 1, "exec %s: %s", o->prog[0], strerror(e));
}

/* What task-privs reported on TASK_PRIVS_REPORT_FD (its messages fit one atomic pipe write),
 * or 0 bytes. Read once the task's process (nsenter, which waits for task-privs) is reaped,
 * so everything task-privs wrote is there. */
static size_t privs_report_read(char *msg, size_t size) {
  if (privs_report[0] < 0) return 0;
  ssize_t n;
  while ((n = read(privs_report[0], msg, size - 1)) < 0 && errno == EINTR) {}
  close(privs_report[0]);
  privs_report[0] = -1;
  msg[n > 0 ? n : 0] = '\0';
  return n > 0 ? (size_t)n : 0;
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
    char ts[40], report[MSG_MAX];
    *task_done = 1;
    if (privs_report_read(report, sizeof report) > 0 && sig) {
      /* nsenter re-raised the signal that killed task-privs's child before its exec */
      start_failed(code, sig, NULL, report);
      continue;
    }
    now_ts(ts);
    exit_rec.body.n = 0;
    jraw(&exit_rec.body, "{\"exitCode\":%d,\"signal\":%d,\"finishedAt\":\"%s\"}\n", code, sig, ts);
    emit_record("exited", &exit_rec, save(&exit_rec));
  }
}

/* Field 22 (starttime) of /proc/PID/stat. */
static void proc_start_time(pid_t pid, char *out, size_t size) {
  proc_stat_field(pid, 22, out, size);
}

/* Test hook: a shim that stalls before it starts the task (see the header). */
static void test_stall(void) {
  const char *ms = getenv("TASK_SHIM_TEST_STALL_MS");
  if (!ms) return;
  long long v = atoll(ms);
  struct timespec t = {(time_t)(v / 1000), (long)(v % 1000) * 1000000L};
  unsetenv("TASK_SHIM_TEST_STALL_MS");
  while (v > 0 && nanosleep(&t, &t) != 0 && errno == EINTR) {}
}

/* --gate 1, once the task has passed its gate: our stdin (the gate) is of no further use. */
static void release_gate(void) {
  int null = open("/dev/null", O_RDONLY);
  if (null >= 0 && null != STDIN_FILENO) {
    dup2(null, STDIN_FILENO);
    close(null);
  }
}

/* --gate 1, the gate closed: the task's process (reaped) was the only member of the cgroups
 * it joined, which go with it. The executor removes them too when it abandoned the start;
 * after an executor crash nobody else would until its next start in this data dir. */
static void remove_cgroups(const struct task_options *o) {
  for (int i = 0; i < o->ncg; i++) {
    char dir[PATH_MAX];
    const char *slash = strrchr(o->cg[i], '/');
    if (!slash || slash == o->cg[i] || (size_t)(slash - o->cg[i]) >= sizeof dir) continue;
    snprintf(dir, sizeof dir, "%.*s", (int)(slash - o->cg[i]), o->cg[i]);
    if (rmdir(dir) != 0) { /* best effort: gone already (co-mounted v1 hierarchies share it), or busy */ }
  }
}

static void prepare_dir(const char *dir);

/* The task's process died without exec and without saying why: killed by a signal (a
 * seccomp rule that kills on execve or on a call just before it, the OOM killer under a
 * tiny memory limit, someone's kill). Its program never ran: a start failure, reported
 * like any other (exit code 128+N, with the signal), never as an exit of the program.
 * Killed before its gate opened, it is reported only once the gate opens, as a failure
 * there would be; a gate that closes instead leaves no trace (see --gate). */
static void died_before_exec(const struct task_options *o, pid_t pid, int passed) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
  if (!passed && !gate_opens()) {
    remove_cgroups(o);
    exit(0);
  }
  char msg[MSG_MAX];
  int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  died_before_exec_message(msg, sizeof msg, status, o->prog[0]);
  start_failed(sig ? 128 + sig : WEXITSTATUS(status) ? WEXITSTATUS(status) : 1, sig, NULL, msg);
  int none = 1;
  reap(-1, &none);
  exit(0);
}

/* Forks the task; returns its pid once it has exec'ed, or exits after recording why it
 * could not start. DIR is prepared (prepare_dir) while the task's process sets itself up,
 * rather than before the fork: both take milliseconds and a start waits for the longer
 * only. The process execs only once DIR is prepared (a byte on `prepared`); if that fails,
 * it is killed first. Its status pipe (`st`) says, in its first byte, that the gate closed
 * (GATE_CLOSED), that it execs now (GOING: start.json is written meanwhile, and renamed
 * into place once the exec is seen, EOF), or why it failed (an exit code, then a message). */
static pid_t spawn_task(const struct task_options *o, int out_w, int err_w) {
  int st[2], prepared[2];
  if (pipe2(st, O_CLOEXEC) || pipe2(prepared, O_CLOEXEC)) setup_fail("create", "pipes");
  if (o->privs_helper && pipe2(privs_report, O_CLOEXEC | O_NONBLOCK)) setup_fail("create", "pipes");
  test_stall();
  pid_t pid = fork();
  if (pid < 0) setup_fail("fork", o->prog[0]);
  if (pid == 0) {
    close(prepared[1]);
    child(out_w, err_w, st[1], prepared[0], o);
  }
  close(out_w);
  close(err_w);
  close(st[1]);
  close(prepared[0]);
  if (privs_report[1] >= 0) close(privs_report[1]);
  task_opts = o;
  waiting_task = pid;
  prepare_dir(o->dir);
  waiting_task = 0;
  if (write_all(prepared[1], "1", 1) != 0) { /* it is gone: the status pipe says how */ }
  close(prepared[1]);
  if (chdir("/") != 0) { /* only matters for unmounting; all paths are fds */ }

  char msg[MSG_MAX + 1];
  size_t mn = read_full(st[0], msg, 1);
  int passed = !o->gate;   /* the child passed its gate (or had none) */
  if (mn == 1 && (unsigned char)msg[0] == GOING) {
    passed = 1;
    /* startedAt: when the task's process was let go */
    char start[32], ts[40];
    proc_start_time(pid, start, sizeof start);   /* field 22 is set at fork and kept by exec */
    now_ts(ts);
    jraw(&start_rec.body, "{\"pid\":%d,\"pgid\":%d,\"shimPid\":%d,\"startTime\":\"%s\",\"startedAt\":\"%s\"}\n", (int)pid,
         (int)pid, (int)getpid(), start, ts);
    if (stage(&start_rec) != 0) { /* save() below tries again and reports it */ }
    mn = read_full(st[0], msg, MSG_MAX);   /* EOF: exec succeeded, or the child died (see has_execed) */
  } else if (mn == 1 && msg[0] != GATE_CLOSED) {
    mn += read_full(st[0], msg + 1, MSG_MAX - 1);
  }
  close(st[0]);
  if (mn > 0) {   /* the child failed before exec, or its gate closed; it has _exit()ed already or will now */
    msg[mn] = '\0';
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    if (msg[0] == GATE_CLOSED) {   /* the task does not exist: no records, no cgroups (see --gate) */
      remove_cgroups(o);
      exit(0);
    }
    start_failed((unsigned char)msg[0], 0, NULL, msg + 1);
    int none = 1;
    reap(-1, &none);
    exit(0);
  }
  if (!has_execed(pid)) died_before_exec(o, pid, passed);

  if (o->gate) release_gate();
  emit_record("started", &start_rec, save(&start_rec));
  return pid;
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

/* SIGTERM: the executor is done with the task. Stop writing logs but keep draining the
 * pipes, so writers never block; a record still pending is given up once the rest is. */
static void handle_signals(int sfd) {
  struct signalfd_siginfo si;
  while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
    if (si.ssi_signo != SIGTERM || released) continue;
    struct jbuf r = {.n = 0};
    released = 1;
    if (log_fd >= 0) close(log_fd);
    log_fd = -1;
    close_plain();
    jraw(&r, "{\"event\":\"released\"}\n");
    emit(&r);
  }
}

/* Logs the task's output, reaps it and its orphans, and keeps retrying records that could
 * not be written, until the task has exited, its pipes are closed and nothing is pending. */
static void supervise(pid_t task, int sfd, int out_r, int err_r, char *chunk) {
  struct pollfd pf[3] = {{sfd, POLLIN, 0}, {out_r, POLLIN, 0}, {err_r, POLLIN, 0}};
  const char *const stream[3] = {"", "stdout", "stderr"};
  int task_done = 0;
  for (;;) {
    int holding = start_rec.pending || exit_rec.pending;
    if (task_done && pf[1].fd < 0 && pf[2].fd < 0 && (!holding || released)) break;
    if (poll(pf, 3, holding ? RETRY_MS : -1) < 0) {
      struct timespec pause = {0, 10 * 1000 * 1000};
      if (errno != EINTR) nanosleep(&pause, NULL);   /* ENOMEM: try again shortly */
      continue;
    }
    if (holding) retry_pending();
    if (pf[0].revents) {
      handle_signals(sfd);
      /* Log what the task wrote before it exited ahead of recording the exit, so a
       * terminated task's output is complete in the files (background writers aside). */
      if (!task_done) drain_pipes(pf, stream, chunk);
      reap(task, &task_done);
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
  reap(task, &task_done);
}

static void parse_args(int argc, char **argv, struct task_options *o) {
  if (argc == 2 && strcmp(argv[1], "--features") == 0) {
    printf("%s\n", privileges_features());
    exit(0);
  }
  if (argc == 3 && strcmp(argv[1], "--seccomp-names") == 0) {
    privileges_print_unknown_syscalls(argv[2]);
    exit(0);
  }
  if (argc >= 3 && strcmp(argv[1], "--seccomp-export") == 0) exit(privileges_export_command(argc - 2, argv + 2));
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = argv[i + 1];
    if (strcmp(a, "--") == 0) {
      o->prog = argv + i + 1;
      break;
    }
    if (strncmp(a, "--", 2) != 0) usage("unexpected argument \"%s\" (put the program after --)", a);
    if (!v) usage("option %s needs a value", a);
    if (strcmp(a, "--dir") == 0) o->dir = v;
    else if (strcmp(a, "--cwd") == 0) o->cwd = v;
    else if (strcmp(a, "--cgroup-procs") == 0) o->cg[o->ncg++] = argv[i + 1];
    else if (strcmp(a, "--user") == 0) o->id.user = v;
    else if (strcmp(a, "--group") == 0) o->id.group = v;
    else if (strcmp(a, "--chroot") == 0) o->id.chroot = v;
    else if (strcmp(a, "--privs-helper") == 0) o->privs_helper = v;
    else if (strcmp(a, "--log-max-bytes") == 0) max_bytes = parse_num(a, v, 1024, 1LL << 50);
    else if (strcmp(a, "--log-max-files") == 0) max_files = parse_num(a, v, 1, 1000000);
    else if (strcmp(a, "--plain-logs") == 0) plain_logs = (int)parse_num(a, v, 0, 1);
    else if (strcmp(a, "--gate") == 0) o->gate = (int)parse_num(a, v, 0, 1);
    else {
      char err[PRIV_MSG_MAX];
      int r = privileges_option(&o->priv, a, v, err, sizeof err);
      if (r < 0) usage("%s", err);
      if (r == 0) usage("unknown option %s", a);
    }
    i++;
  }
  if (!o->dir) usage("--dir is required");
  if (o->dir[0] != '/') usage("--dir must be an absolute path, got \"%s\"", o->dir);
  if (!o->prog || !o->prog[0]) usage("no program given after --");
}

/* Opens DIR and clears the records of an earlier run, first of all: a failure of the shim's
 * own set-up is recorded in DIR, and no record of an earlier run may stay beside it. */
static void open_dir(const char *dir) {
  if ((dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) setup_fail("open", dir);
  static const char *const stale[] = {"start.json", "exit.json", "start.json.tmp", "exit.json.tmp"};
  for (size_t k = 0; k < sizeof stale / sizeof *stale; k++)   /* DIR reused: files must be this run's */
    if (unlinkat(dir_fd, stale[k], 0) != 0 && errno != ENOENT) setup_fail("remove", stale[k]);
}

/* Reserves room for this run's records and opens DIR/logs; a data dir without that room
 * refuses the start (DataDirFull). */
static void prepare_dir(const char *dir) {
  int e = reserve(&exit_rec);
  if (!e) e = reserve(&start_rec);
  if (e) {
    errno = e;
    setup_fail("reserve space for the task's records in", dir);
  }
  if (mkdirat(dir_fd, "logs", 0755) != 0 && errno != EEXIST) setup_fail("mkdir", "logs");
  if ((logs_fd = openat(dir_fd, "logs", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) setup_fail("open", "logs");
  scan_logs();
  if (open_log() != 0) { /* retried on the first record */ }
  /* Created up front, as the original did, so a script can cat them before any output. */
  plain_cap = max_bytes > LLONG_MAX / max_files ? LLONG_MAX : max_bytes * max_files;
  for (int k = 0; plain_logs && k < 2; k++)
    if (open_plain(&plain[k]) != 0) { /* retried on the first output */ }
}

/* task-shim --lock-dir DIR: holds an exclusive flock(2) on DIR while its stdin is open.
 * The executor uses it to make the take-over of its data dir's lock socket exclusive
 * (src/store/data-dir-lock.ts says why). Prints "locked" once it holds the lock (it
 * waits for it), then reads stdin until EOF and exits, which releases it: the lock is on
 * this process's open file description only (O_CLOEXEC, no children), so the kernel
 * drops it when we exit, whether the executor closed our stdin or died (our stdin's
 * EOF, or PR_SET_PDEATHSIG while we still wait for the lock). Exit status: 0 after the
 * lock was held, 1 with "error WHAT: REASON" on stdout when it could not be taken. */
static int lock_dir_main(const char *dir) {
  prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);   /* best effort: stdin's EOF ends us anyway */
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    printf("error open %s: %s\n", dir, strerror(errno));
    return 1;
  }
  int r;
  while ((r = flock(fd, LOCK_EX)) != 0 && errno == EINTR) {}
  if (r != 0) {
    printf("error flock %s: %s\n", dir, strerror(errno));
    return 1;
  }
  printf("locked\n");
  fflush(stdout);
  char buf[64];
  for (;;) {
    ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
    if (n == 0 || (n < 0 && errno != EINTR)) return 0;
  }
}

/* One NUL-terminated field of a pooled request at *pos (bounded by end), or NULL. */
static char *pooled_field(char **pos, char *end) {
  char *f = *pos, *nul = f < end ? memchr(f, '\0', (size_t)(end - f)) : NULL;
  if (!nul) return NULL;
  *pos = nul + 1;
  return f;
}

static long pooled_count(char **pos, char *end) {
  char *f = pooled_field(pos, end), *stop;
  long n = f ? strtol(f, &stop, 10) : -1;
  return f && *f && !*stop && n >= 0 && n <= 1 << 20 ? n : -1;
}

/* task-shim --pooled PAD (started ahead by the spawner, see spawner.c): waits on stdin for
 * "LEN\0" and LEN bytes of NUL-terminated fields, ARGC ARGV... ENVC ENV..., and returns that
 * argv (*argc set) with the environment replaced by ENV, as if it had been exec'ed with them.
 * It then rewrites its own command line in place, over "--pooled PAD", to the fields of the
 * new argv that fit (the spawner hands over only requests whose "--dir DIR" does): the
 * executor finds shims by "--dir DIR" in /proc/PID/cmdline (stalled-shims.ts). Only then
 * does it write a byte on fd 3 (its ready pipe), on which the spawner holds the gate's "go".
 * EOF before a request (the spawner ended: it was never used) exits 0 having touched nothing. */
static char **pooled_request(int *argc, char **argv) {
  extern char **environ;
  char len[24], *stop;
  size_t n = 0;
  signal(SIGPIPE, SIG_IGN);   /* as main() sets it: a spawner gone must not end us at the ready byte */
  for (;;) {   /* byte by byte: what follows the request on stdin is the gate's */
    if (n == sizeof len || read_full(STDIN_FILENO, len + n, 1) != 1) {
      if (n == 0) exit(0);
      fputs("task-shim --pooled: malformed request length\n", stderr);
      exit(2);
    }
    if (len[n++] == '\0') break;
  }
  unsigned long long size = strtoull(len, &stop, 10);
  char *buf = size < (1ULL << 24) && !*stop ? malloc(size + 1) : NULL;
  if (!buf || read_full(STDIN_FILENO, buf, size) != size) {
    fputs("task-shim --pooled: incomplete request\n", stderr);
    exit(2);
  }
  char *pos = buf, *end = buf + size;
  long nargs = pooled_count(&pos, end), nenv;
  char **args = nargs > 0 ? calloc((size_t)nargs + 1, sizeof *args) : NULL;
  for (long i = 0; args && i < nargs; i++)
    if (!(args[i] = pooled_field(&pos, end))) nargs = -1;
  char **env = args && nargs > 0 && (nenv = pooled_count(&pos, end)) >= 0 ? calloc((size_t)nenv + 1, sizeof *env) : NULL;
  for (long i = 0; env && i < nenv; i++)
    if (!(env[i] = pooled_field(&pos, end))) env = NULL;
  if (!env || pos != end) {
    fputs("task-shim --pooled: malformed request\n", stderr);
    exit(2);
  }
  environ = env;
  /* The command line: the kernel shows the bytes from argv[0] to the end of the last
   * argument; the last byte stays NUL, so /proc/PID/cmdline is read as NUL-separated fields. */
  char *area = argv[1], *area_end = argv[*argc - 1] + strlen(argv[*argc - 1]);
  memset(area, 0, (size_t)(area_end - area));
  for (long i = 1; i < nargs; i++) {
    size_t k = strlen(args[i]) + 1;
    if (k > (size_t)(area_end - area)) break;
    memcpy(area, args[i], k);
    area += k;
  }
  if (write(3, "r", 1) != 1 || close(3) != 0) { /* started by hand, without a ready pipe */ }
  *argc = (int)nargs;
  return args;
}

/* Makes sure 0-2 are open, so pipes never land there, and closes every descriptor above
 * them: what the executor inherited without close-on-exec (a service manager's socket, a
 * shell's redirection) must not be held by the spawner, its pooled shims, the data dir
 * lock's holder or the tasks for their lifetimes. 0 or -1. */
static int own_descriptors_only(void) {
  for (int fd = 0; fd < 3; fd++)
    if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) != fd) return -1;
  if (close_range(3, ~0U, 0) != 0)
    for (long fd = 3, max = sysconf(_SC_OPEN_MAX); fd < max && fd < 65536; fd++) close((int)fd);
  return 0;
}

int main(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "--spawner") == 0) {
    if (argc != 2 && (argc != 4 || strcmp(argv[2], "--pool") != 0)) usage("--spawner takes only --pool N");
    long pool = argc == 4 ? (long)parse_num(argv[2], argv[3], 0, POOL_MAX) : 0;
    if (own_descriptors_only() != 0) return 1;
    return spawner_main(argv[0], pool);
  }
  if (argc == 3 && strcmp(argv[1], "--lock-dir") == 0) return own_descriptors_only() != 0 ? 1 : lock_dir_main(argv[2]);
  if (argc == 3 && strcmp(argv[1], "--pooled") == 0) argv = pooled_request(&argc, argv);
  struct task_options o = {.cg = calloc((size_t)argc, sizeof(char *))};
  sigset_t mask;

  if (own_descriptors_only() != 0) return 1;
  sigemptyset(&mask);
  sigaddset(&mask, SIGCHLD);
  sigaddset(&mask, SIGTERM);
  /* SIGCHLD/SIGTERM may arrive ignored (SIG_IGN would auto-reap or discard them): the
   * default disposition plus a blocked mask delivers them to the signalfd. */
  if (!o.cg || sigprocmask(SIG_BLOCK, &mask, NULL) != 0 || signal(SIGCHLD, SIG_DFL) == SIG_ERR ||
      signal(SIGTERM, SIG_DFL) == SIG_ERR || signal(SIGPIPE, SIG_IGN) == SIG_ERR ||
      signal(SIGINT, SIG_IGN) == SIG_ERR || signal(SIGHUP, SIG_IGN) == SIG_ERR) {
    perror("task-shim: setup");
    return 1;
  }
  parse_args(argc, argv, &o);
  open_dir(o.dir);

  int out[2], err[2], sfd;
  char *chunk = malloc(CHUNK);
  if (!chunk) setup_fail("allocate", "buffer");
  if (pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC)) setup_fail("create", "pipes");
  /* our own read ends only: never the shared descriptions we inherited */
  if (fcntl(out[0], F_SETFL, O_NONBLOCK) || fcntl(err[0], F_SETFL, O_NONBLOCK)) setup_fail("configure", "pipes");
  if ((sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC)) < 0) setup_fail("create", "signalfd");
  if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0) setup_fail("prctl", "PR_SET_CHILD_SUBREAPER");

  pid_t task = spawn_task(&o, out[1], err[1]);
  supervise(task, sfd, out[0], err[0], chunk);
  if (log_fd >= 0) close(log_fd);
  close_plain();
  return 0;
}
