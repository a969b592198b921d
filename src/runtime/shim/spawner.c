/*
 * task-shim --spawner: starts task-shims on the executor's behalf.
 *
 * Why it exists: fork() copies the parent's page tables, so every spawn made by the
 * executor itself (a Node process of 100+ MiB) blocked its event loop for as long as
 * that copy took: 6.7 ms at 148 MiB RSS on the 2-core CI VM, growing with the heap, in
 * which no RPC was answered. This process is a few hundred KiB and starts each shim with
 * posix_spawn (clone with CLONE_VFORK, no copy at all), so a start costs the executor
 * one pipe write and one line read.
 *
 * The executor starts one spawner and keeps it; the spawner never decides anything. It
 * starts each shim in a new session (as `detached` did), relays the shim's stdout and
 * stderr lines, reaps it and reports its exit. Shims never depend on it: when it ends
 * (its stdin closed because the executor stopped or died) the shims keep running and
 * their later event lines are dropped, exactly as when the executor itself goes away;
 * the executor watches their records on disk either way.
 *
 * Pre-started shims (--pool N): exec and dynamic loading of a shim take a few milliseconds
 * of a start (2.4 ms from a request to the shim's main() on the CI VM), so the spawner keeps
 * N shims started ahead ("pooled": `task-shim --pooled PAD`, exec'ed with no environment, in a session of their
 * own, blocked reading their stdin, a pipe held here) and hands a start request to one of
 * them: it writes "LEN\0" and the request's ARGC ARGV... ENVC ENV... fields (LEN bytes) to
 * the shim's stdin, which from then on is its gate. The shim takes that environment and those
 * arguments as if exec'ed with them (task-shim.c, pooled_request), rewrites its command line
 * in place to "ARGV[0] --dir DIR ..." (what the executor finds shims by), and then writes one
 * byte on fd 3, its ready pipe. A "go" that comes before that byte is held until it comes, so
 * that a task never starts from a shim the executor could not find by its command line. A
 * pooled shim is used only for a gated request whose ARGV[0] is our own binary and ARGV[1] is
 * "--dir" with a DIR that fits the room in its command line, and whose fields fit its pipe;
 * any other request is started as before. A replacement is started after the reply, once no
 * start is under way (see pool_refill); one that dies unused is reaped without a word, and
 * replaced only after POOL_RETRY_MS. When we end,
 * the unused ones read EOF and exit 0, having touched nothing.
 *
 * It also watches processes it did not start (the shims of tasks an earlier executor
 * started) through pidfds, so that their end is pushed too, not found by a periodic check.
 *
 * Requests, on stdin; every field ends with a NUL byte:
 *   start ID GATED ARGC ARGV[0] ... ARGV[ARGC-1] ENVC ENV[0] ... ENV[ENVC-1]
 *         ARGV[0] is the path of the program; ID is the executor's name for this request.
 *         GATED "1": the shim's stdin is a pipe we hold (its --gate), else /dev/null.
 *   go ID      writes "go\n" to the gate of start ID and closes it
 *   abort ID   closes the gate of start ID (so does our own end)
 *   watch ID PID
 * Replies, on stdout, one line each, in this order per ID:
 *   start: "ID pid PID"    the shim runs (or "ID error MESSAGE" when it could not start)
 *          "ID out LINE"   a line the shim wrote on its stdout
 *          "ID err LINE"   a line the shim wrote on its stderr
 *          "ID exit CODE" | "ID exit SIGNAME"   after both streams ended and the shim was reaped
 *   watch: "ID watching"   a pidfd holds the process (or "ID gone" at once if there is none)
 *          "ID gone"       it ended
 * Lines longer than LINE_MAX_BYTES are cut into several. Exit status: 0 when stdin ends,
 * 1 when it cannot set itself up or its stdout is gone.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "spawner.h"

#define LINE_MAX_BYTES 65536
#define REQUEST_MAX_BYTES (8 << 20)
#define POOL_RETRY_MS 1000    /* a pooled shim died unused: the next one only after this */
#define POOL_YIELD_MS 50      /* how long a replacement waits for the starts under way (see pool_refill) */

struct stream {
  int fd;            /* -1 once ended */
  char *buf;
  size_t len;
};

struct shim {
  char *id;          /* NULL: a pooled shim no request was handed to yet */
  int gate;          /* write end of the shim's stdin while gated (or pooled and unused), else -1 */
  int ready;         /* a pooled shim's ready pipe until its byte (or EOF) came, else -1 */
  int hold_go;       /* "go" came before the ready byte: sent when it comes */
  size_t room;       /* a pooled shim's pipe capacity (the largest request it can take) */
  long long starting_since;   /* a start under way (no stdout line yet): since when (ms), else 0 */
  pid_t pid;         /* 0 once reaped */
  int status;
  struct stream out, err;
};

static struct shim *shims;
static size_t nshims, capshims;

struct watch {
  char *id;
  int pidfd;
};

static struct watch *watches;
static size_t nwatches, capwatches;
static char *req;
static size_t reqlen, reqcap;
static const char *self;          /* our own binary: pooled shims are started from it */
static long pool_size;            /* --pool */
static long long pool_retry_at;   /* CLOCK_MONOTONIC ms before which no pooled shim is started */
static char pool_pad[POOL_CMDLINE_ROOM + 1];

static long long monotonic_ms(void) {
  struct timespec ts = {0, 0};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void die(const char *what) {
  fprintf(stderr, "task-shim --spawner: %s: %s\n", what, strerror(errno));
  exit(1);
}

static void *xrealloc(void *p, size_t n) {
  void *q = realloc(p, n);
  if (!q) die("allocate");
  return q;
}

/* One reply line; the executor reads them as they come. A failed write means it is gone. */
static void reply(const char *id, const char *kind, const char *text, size_t n) {
  size_t idn = strlen(id), kn = strlen(kind), total = idn + kn + n + 3;
  char *line = xrealloc(NULL, total);
  memcpy(line, id, idn);
  line[idn] = ' ';
  memcpy(line + idn + 1, kind, kn);
  line[idn + 1 + kn] = ' ';
  memcpy(line + idn + 2 + kn, text, n);
  line[total - 1] = '\n';
  for (size_t done = 0; done < total;) {
    ssize_t w = write(STDOUT_FILENO, line + done, total - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) exit(1);
    done += (size_t)w;
  }
  free(line);
}

static void reply_str(const char *id, const char *kind, const char *text) { reply(id, kind, text, strlen(text)); }

/* Sends every complete line of a stream; the rest too when the stream ended or the buffer is full. */
static void flush_lines(const char *id, const char *kind, struct stream *s, int ended) {
  size_t start = 0;
  for (char *nl; (nl = memchr(s->buf + start, '\n', s->len - start)); start = (size_t)(nl - s->buf) + 1)
    reply(id, kind, s->buf + start, (size_t)(nl - s->buf) - start);
  if (start < s->len && (ended || s->len == LINE_MAX_BYTES)) {
    reply(id, kind, s->buf + start, s->len - start);
    start = s->len;
  }
  memmove(s->buf, s->buf + start, s->len - start);
  s->len -= start;
}

static void finish_if_done(size_t k) {
  struct shim *s = &shims[k];
  if (s->pid != 0 || s->out.fd >= 0 || s->err.fd >= 0) return;
  if (!s->id) {   /* a pooled shim died unused: nobody asked for it; replaced later, not in a loop */
    pool_retry_at = monotonic_ms() + POOL_RETRY_MS;
  } else {
    char status[32];
    const char *name = WIFSIGNALED(s->status) ? sigabbrev_np(WTERMSIG(s->status)) : NULL;
    if (name) snprintf(status, sizeof status, "SIG%s", name);
    else if (WIFSIGNALED(s->status)) snprintf(status, sizeof status, "%d", 128 + WTERMSIG(s->status));
    else snprintf(status, sizeof status, "%d", WEXITSTATUS(s->status));
    reply_str(s->id, "exit", status);
  }
  if (s->gate >= 0) close(s->gate);
  if (s->ready >= 0) close(s->ready);
  free(s->id);
  free(s->out.buf);
  free(s->err.buf);
  shims[k] = shims[--nshims];
}

static void drain(size_t k, struct stream *s, const char *kind) {
  for (;;) {
    ssize_t r = read(s->fd, s->buf + s->len, LINE_MAX_BYTES - s->len);
    if (r > 0 && !shims[k].id) continue;   /* an unused pooled shim has nothing to say to anyone */
    if (r > 0 && s == &shims[k].out) shims[k].starting_since = 0;   /* its first event: the start is done */
    if (r > 0) {
      s->len += (size_t)r;
      if (s->len == LINE_MAX_BYTES) flush_lines(shims[k].id, kind, s, 0);
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && errno == EAGAIN) {
      if (shims[k].id) flush_lines(shims[k].id, kind, s, 0);
      return;
    }
    if (shims[k].id) flush_lines(shims[k].id, kind, s, 1);  /* EOF (or an error: treated as the end) */
    close(s->fd);
    s->fd = -1;
    return;
  }
}

static void reap(void) {
  for (;;) {
    int status;
    pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid <= 0) return;
    for (size_t k = 0; k < nshims; k++) {
      if (shims[k].pid != pid) continue;
      shims[k].pid = 0;
      shims[k].status = status;
      finish_if_done(k);
      break;
    }
  }
}

static int open_stream(struct stream *s, int fds[2]) {
  if (pipe2(fds, O_CLOEXEC) != 0) return -1;
  if (fcntl(fds[0], F_SETFL, O_NONBLOCK) != 0) {
    close(fds[0]);
    close(fds[1]);
    return -1;
  }
  s->fd = fds[0];
  s->buf = xrealloc(NULL, LINE_MAX_BYTES);
  s->len = 0;
  return 0;
}

static void add_shim(const struct shim *s) {
  if (nshims == capshims) shims = xrealloc(shims, (capshims = capshims ? 2 * capshims : 64) * sizeof *shims);
  shims[nshims++] = *s;
}

/* posix_spawn of a shim in a session of its own, with a clean signal state: its stdin from
 * `in` (or /dev/null when -1), its stdout and stderr to s's streams, `ready` as its fd 3 when
 * >= 0. Returns 0 or an errno value; the child's ends are closed either way. */
static int spawn_shim(struct shim *s, int in, int out[2], int err[2], int ready, char **argv, char **envp) {
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawn_file_actions_init(&actions);
  if (in >= 0) posix_spawn_file_actions_adddup2(&actions, in, STDIN_FILENO);
  else posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, err[1], STDERR_FILENO);
  if (ready >= 0) posix_spawn_file_actions_adddup2(&actions, ready, 3);   /* ready != 3 (see pool_spawn) */
  posix_spawnattr_init(&attr);
  /* A session of its own (the shim must outlive us), and a clean signal state. */
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  int rc = posix_spawn(&s->pid, argv[0], &actions, &attr, argv, envp);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  close(out[1]);
  close(err[1]);
  out[1] = err[1] = -1;
  if (in >= 0) close(in);
  if (ready >= 0) close(ready);
  return rc;
}

static void start(char *id, int gated, char **argv, char **envp) {
  int out[2] = {-1, -1}, err[2] = {-1, -1}, gate[2] = {-1, -1}, rc;
  struct shim s = {.id = strdup(id), .gate = -1, .ready = -1, .out = {-1, NULL, 0}, .err = {-1, NULL, 0}};
  if (!s.id) die("allocate");
  if (open_stream(&s.out, out) != 0 || open_stream(&s.err, err) != 0 || (gated && pipe2(gate, O_CLOEXEC) != 0)) {
    rc = errno;
    goto failed;
  }
  rc = spawn_shim(&s, gated ? gate[0] : -1, out, err, -1, argv, envp);
  gate[0] = -1;
  if (rc != 0) goto failed;
  s.gate = gate[1];
  s.starting_since = monotonic_ms();
  char pid[24];
  snprintf(pid, sizeof pid, "%d", (int)s.pid);
  reply_str(id, "pid", pid);
  add_shim(&s);
  return;
failed:
  for (int i = 0; i < 2; i++) {
    if (out[i] >= 0) close(out[i]);
    if (err[i] >= 0) close(err[i]);
    if (gate[i] >= 0) close(gate[i]);
  }
  reply_str(id, "error", strerror(rc));
  free(s.id);
  free(s.out.buf);
  free(s.err.buf);
}

/* ---- pooled shims ---- */

static long pooled_unused(void) {
  long n = 0;
  for (size_t k = 0; k < nshims; k++) n += !shims[k].id && shims[k].pid != 0 && shims[k].gate >= 0;
  return n;
}

/* Starts one pooled shim (`SELF --pooled PAD`, with no environment: see below); false when it could not. */
static int pool_spawn(void) {
  int out[2] = {-1, -1}, err[2] = {-1, -1}, in[2] = {-1, -1}, ready[2] = {-1, -1};
  struct shim s = {.id = NULL, .gate = -1, .ready = -1, .out = {-1, NULL, 0}, .err = {-1, NULL, 0}};
  char *argv[] = {(char *)self, "--pooled", pool_pad, NULL};
  /* No environment: a shim exec'ed for a request had the task's own as its initial one, which a
   * task of the same user can read from /proc/PPID/environ; ours (the executor's) must not be
   * there instead (a cleanEnv task would read it). The request's comes later, in the heap. */
  char *no_env[] = {NULL};
  if (open_stream(&s.out, out) == 0 && open_stream(&s.err, err) == 0 && pipe2(in, O_CLOEXEC) == 0 &&
      pipe2(ready, O_CLOEXEC) == 0) {
    if (ready[1] == 3) {   /* a dup2 onto itself would leave it close-on-exec */
      int moved = fcntl(ready[1], F_DUPFD_CLOEXEC, 4);
      close(ready[1]);
      ready[1] = moved;
    }
    int capacity = fcntl(in[1], F_GETPIPE_SZ);
    s.room = capacity > 64 ? (size_t)capacity - 64 : 0;
    int rc = ready[1] >= 0 ? spawn_shim(&s, in[0], out, err, ready[1], argv, no_env) : errno;
    if (ready[1] >= 0) in[0] = ready[1] = -1;   /* closed by spawn_shim */
    if (rc == 0) {
      s.gate = in[1];
      s.ready = ready[0];
      add_shim(&s);
      return 1;
    }
  }
  for (int i = 0; i < 2; i++) {
    if (out[i] >= 0) close(out[i]);
    if (err[i] >= 0) close(err[i]);
    if (in[i] >= 0) close(in[i]);
    if (ready[i] >= 0) close(ready[i]);
  }
  free(s.out.buf);
  free(s.err.buf);
  return 0;
}

/* Tops the pool up by one shim when it is short and not waiting after a failure. Returns the
 * poll timeout until the next attempt: -1 when the pool is full, else ms. A replacement is
 * started only once no start is under way (none waits for its first event line), or after
 * POOL_YIELD_MS: its exec and dynamic loading would compete for the CPU with the set-up of
 * the shim that just took the request (measured: s0 -> gate 1 ms longer on 2 cores). */
static int pool_refill(void) {
  if (pooled_unused() >= pool_size) return -1;
  long long now = monotonic_ms(), wait = pool_retry_at - now;
  for (size_t k = 0; k < nshims; k++)
    if (shims[k].starting_since && shims[k].starting_since + POOL_YIELD_MS - now > wait)
      wait = shims[k].starting_since + POOL_YIELD_MS - now;
  if (wait > 0) return (int)wait;
  if (!pool_spawn()) {
    pool_retry_at = now + POOL_RETRY_MS;
    return POOL_RETRY_MS;
  }
  return pooled_unused() < pool_size ? 0 : -1;
}

/* Hands a start request to a pooled shim: true when one took it and the pid reply is sent.
 * `fields`: the request's ARGC ARGV... ENVC ENV... part, n bytes. Only gated starts (the
 * executor's Creates): their task waits for "go", which we hold until the shim can be found
 * by its --dir. A shim without a gate would start its task on its own, and one that stalled
 * before rewriting its command line could do so after an executor restart had looked for it
 * and started the task again; such starts are exec'ed as before, findable from their exec. */
static int hand_over(const char *id, int gated, char **argv, const char *fields, size_t n) {
  if (!gated || !argv[1] || !argv[2] || strcmp(argv[0], self) != 0 || strcmp(argv[1], "--dir") != 0 ||
      strlen(argv[1]) + strlen(argv[2]) + 2 >= sizeof pool_pad)
    return 0;
  for (size_t k = 0; k < nshims; k++) {
    struct shim *s = &shims[k];
    if (s->id || s->pid == 0 || s->gate < 0 || n + 24 > s->room) continue;
    char len[24];
    int ln = snprintf(len, sizeof len, "%zu", n) + 1;   /* with its NUL */
    struct iovec iov[2] = {{len, (size_t)ln}, {(void *)fields, n}};
    /* The pipe is empty and has the room: this write does not block. */
    ssize_t w;
    do w = writev(s->gate, iov, 2); while (w < 0 && errno == EINTR);
    if (w != (ssize_t)(ln + n)) {   /* it died unused (its exit is reaped silently), or worse: not this one */
      close(s->gate);
      s->gate = -1;
      continue;
    }
    if (!(s->id = strdup(id))) die("allocate");
    s->starting_since = monotonic_ms();
    char pid[24];
    snprintf(pid, sizeof pid, "%d", (int)s->pid);
    reply_str(id, "pid", pid);
    return 1;
  }
  return 0;
}

/* A pooled shim's ready byte (or EOF: it died): a "go" held for it goes out now. */
static void on_ready(struct shim *s) {
  char byte;
  ssize_t r;
  do r = read(s->ready, &byte, 1); while (r < 0 && errno == EINTR);
  close(s->ready);
  s->ready = -1;
  if (s->hold_go && s->gate >= 0) {
    if (r == 1 && write(s->gate, "go\n", 3) != 3) { /* the shim is gone: its exit follows */ }
    close(s->gate);
    s->gate = -1;
  }
}

/* go: the shim may start its program; abort: it must not (it sees EOF). */
static void open_gate(const char *id, int go) {
  for (size_t k = 0; k < nshims; k++) {
    if (!shims[k].id || strcmp(shims[k].id, id) != 0 || shims[k].gate < 0) continue;
    if (go && shims[k].ready >= 0) {   /* a pooled shim not yet findable by its --dir: wait for it */
      shims[k].hold_go = 1;
      return;
    }
    if (go && write(shims[k].gate, "go\n", 3) != 3) { /* the shim is gone: its exit follows */ }
    close(shims[k].gate);
    shims[k].gate = -1;
    return;
  }
}

static void watch(char *id, const char *pid) {
  char *end;
  long n = strtol(pid, &end, 10);
  int fd = *end || n <= 0 ? -1 : (int)syscall(SYS_pidfd_open, (pid_t)n, 0);
  if (fd < 0) {
    if (errno == ESRCH || *end || n <= 0) reply_str(id, "gone", "");
    else reply_str(id, "error", strerror(errno));
    return;
  }
  fcntl(fd, F_SETFD, FD_CLOEXEC);
  if (nwatches == capwatches) watches = xrealloc(watches, (capwatches = capwatches ? 2 * capwatches : 64) * sizeof *watches);
  watches[nwatches].id = strdup(id);
  if (!watches[nwatches].id) die("allocate");
  watches[nwatches++].pidfd = fd;
  reply_str(id, "watching", "");
}

/* The next NUL-terminated field at *pos, or NULL when the request is not complete yet. */
static char *field(size_t *pos) {
  char *end = memchr(req + *pos, '\0', reqlen - *pos);
  if (!end) return NULL;
  char *f = req + *pos;
  *pos = (size_t)(end - req) + 1;
  return f;
}

static int count(size_t *pos, long *n) {
  char *f = field(pos), *end;
  if (!f) return 0;
  errno = 0;
  *n = strtol(f, &end, 10);
  if (errno || *end || *n < 0 || *n > 1 << 20) {
    fprintf(stderr, "task-shim --spawner: malformed request (count \"%.20s\")\n", f);
    exit(1);
  }
  return 1;
}

/* Handles every complete request in the buffer. */
static void handle_requests(void) {
  size_t consumed = 0;
  for (;;) {
    size_t pos = consumed;
    char *verb = field(&pos), *id = verb ? field(&pos) : NULL;
    if (!id) break;
    if (strcmp(verb, "go") == 0 || strcmp(verb, "abort") == 0) {
      open_gate(id, verb[0] == 'g');
      consumed = pos;
      continue;
    }
    if (strcmp(verb, "watch") == 0) {
      char *pid = field(&pos);
      if (!pid) break;
      watch(id, pid);
      consumed = pos;
      continue;
    }
    if (strcmp(verb, "start") != 0) {
      fprintf(stderr, "task-shim --spawner: unknown request \"%.20s\"\n", verb);
      exit(1);
    }
    long argc, envc;
    char *gated = field(&pos);
    size_t fields = pos;   /* ARGC ARGV... ENVC ENV...: what a pooled shim is given */
    if (!gated || !count(&pos, &argc)) break;
    char **argv = xrealloc(NULL, (size_t)(argc + 1) * sizeof *argv);
    long i;
    for (i = 0; i < argc && (argv[i] = field(&pos)); i++) {}
    if (i < argc || !count(&pos, &envc)) {
      free(argv);
      break;
    }
    char **envp = xrealloc(NULL, (size_t)(envc + 1) * sizeof *envp);
    for (i = 0; i < envc && (envp[i] = field(&pos)); i++) {}
    if (i < envc) {
      free(argv);
      free(envp);
      break;
    }
    argv[argc] = NULL;
    envp[envc] = NULL;
    int gate = strcmp(gated, "1") == 0;
    if (argc == 0) reply_str(id, "error", "empty argv");
    else if (!hand_over(id, gate, argv, req + fields, pos - fields)) start(id, gate, argv, envp);
    free(argv);
    free(envp);
    consumed = pos;
  }
  memmove(req, req + consumed, reqlen - consumed);
  reqlen -= consumed;
}

int spawner_main(const char *self_path, long pool) {
  self = self_path;
  pool_size = pool;
  memset(pool_pad, ' ', POOL_CMDLINE_ROOM);
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGCHLD);
  /* Ctrl-C of `npm start` reaches the whole process group: the spawner ends with its stdin instead. */
  if (sigprocmask(SIG_BLOCK, &mask, NULL) != 0 || signal(SIGPIPE, SIG_IGN) == SIG_ERR ||
      signal(SIGINT, SIG_IGN) == SIG_ERR || signal(SIGHUP, SIG_IGN) == SIG_ERR)
    die("set up signals");
  int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  if (sfd < 0) die("signalfd");
  /* Two pipes per running shim: a thousand tasks need more than the usual soft limit of 1024. */
  struct rlimit nofile;
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
  }
  if (fcntl(STDIN_FILENO, F_SETFD, FD_CLOEXEC) != 0 || fcntl(STDOUT_FILENO, F_SETFD, FD_CLOEXEC) != 0) die("configure stdio");
  req = xrealloc(NULL, reqcap = 65536);

  struct pollfd *pf = NULL;
  size_t pfcap = 0;
  for (;;) {
    int timeout = pool_size > 0 ? pool_refill() : -1;
    size_t need = 2 + 3 * nshims + nwatches;
    if (need > pfcap) pf = xrealloc(pf, (pfcap = 2 * need) * sizeof *pf);
    pf[0] = (struct pollfd){.fd = STDIN_FILENO, .events = POLLIN};
    pf[1] = (struct pollfd){.fd = sfd, .events = POLLIN};
    for (size_t k = 0; k < nshims; k++) {
      pf[2 + 3 * k] = (struct pollfd){.fd = shims[k].out.fd, .events = POLLIN};
      pf[3 + 3 * k] = (struct pollfd){.fd = shims[k].err.fd, .events = POLLIN};
      pf[4 + 3 * k] = (struct pollfd){.fd = shims[k].ready, .events = POLLIN};
    }
    for (size_t w = 0; w < nwatches; w++) pf[2 + 3 * nshims + w] = (struct pollfd){.fd = watches[w].pidfd, .events = POLLIN};
    size_t polled = nshims, watched = nwatches;
    if (poll(pf, need, timeout) < 0) {
      if (errno == EINTR) continue;
      die("poll");
    }
    /* Streams first, then the exits: a shim's last lines go out before its exit. */
    for (size_t k = polled; k-- > 0;) {
      if (pf[4 + 3 * k].revents && shims[k].ready >= 0) on_ready(&shims[k]);
      if (pf[2 + 3 * k].revents && shims[k].out.fd >= 0) drain(k, &shims[k].out, "out");
      if (pf[3 + 3 * k].revents && shims[k].err.fd >= 0) drain(k, &shims[k].err, "err");
      finish_if_done(k);
    }
    for (size_t w = watched; w-- > 0;) {
      if (!pf[2 + 3 * polled + w].revents) continue;
      reply_str(watches[w].id, "gone", "");
      close(watches[w].pidfd);
      free(watches[w].id);
      watches[w] = watches[--nwatches];
    }
    if (pf[1].revents) {
      struct signalfd_siginfo si;
      while (read(sfd, &si, sizeof si) == sizeof si) {}
      reap();
    }
    if (pf[0].revents) {
      if (reqlen == reqcap) {
        if (reqcap >= REQUEST_MAX_BYTES) {
          fprintf(stderr, "task-shim --spawner: a request is longer than %d bytes\n", REQUEST_MAX_BYTES);
          return 1;
        }
        req = xrealloc(req, reqcap *= 2);
      }
      ssize_t r = read(STDIN_FILENO, req + reqlen, reqcap - reqlen);
      if (r == 0) return 0;  /* the executor is done: the shims run on without us */
      if (r < 0 && errno != EINTR && errno != EAGAIN) die("read requests");
      if (r > 0) {
        reqlen += (size_t)r;
        handle_requests();
      }
    }
  }
}
