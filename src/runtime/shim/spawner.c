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
#include <sys/wait.h>
#include <unistd.h>

#include "spawner.h"

#define LINE_MAX_BYTES 65536
#define REQUEST_MAX_BYTES (8 << 20)

struct stream {
  int fd;            /* -1 once ended */
  char *buf;
  size_t len;
};

struct shim {
  char *id;
  int gate;          /* write end of the shim's stdin while gated, else -1 */
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
  char status[32];
  const char *name = WIFSIGNALED(s->status) ? sigabbrev_np(WTERMSIG(s->status)) : NULL;
  if (name) snprintf(status, sizeof status, "SIG%s", name);
  else if (WIFSIGNALED(s->status)) snprintf(status, sizeof status, "%d", 128 + WTERMSIG(s->status));
  else snprintf(status, sizeof status, "%d", WEXITSTATUS(s->status));
  reply_str(s->id, "exit", status);
  if (s->gate >= 0) close(s->gate);
  free(s->id);
  free(s->out.buf);
  free(s->err.buf);
  shims[k] = shims[--nshims];
}

static void drain(size_t k, struct stream *s, const char *kind) {
  for (;;) {
    ssize_t r = read(s->fd, s->buf + s->len, LINE_MAX_BYTES - s->len);
    if (r > 0) {
      s->len += (size_t)r;
      if (s->len == LINE_MAX_BYTES) flush_lines(shims[k].id, kind, s, 0);
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && errno == EAGAIN) {
      flush_lines(shims[k].id, kind, s, 0);
      return;
    }
    flush_lines(shims[k].id, kind, s, 1);  /* EOF (or an error: treated as the end) */
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

static void start(char *id, int gated, char **argv, char **envp) {
  int out[2] = {-1, -1}, err[2] = {-1, -1}, gate[2] = {-1, -1}, rc;
  struct shim s = {.id = strdup(id), .gate = -1, .out = {-1, NULL, 0}, .err = {-1, NULL, 0}};
  if (!s.id) die("allocate");
  if (open_stream(&s.out, out) != 0 || open_stream(&s.err, err) != 0 || (gated && pipe2(gate, O_CLOEXEC) != 0)) {
    rc = errno;
    goto failed;
  }
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawn_file_actions_init(&actions);
  if (gated) posix_spawn_file_actions_adddup2(&actions, gate[0], STDIN_FILENO);
  else posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, err[1], STDERR_FILENO);
  posix_spawnattr_init(&attr);
  /* A session of its own (the shim must outlive us), and a clean signal state. */
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  rc = posix_spawn(&s.pid, argv[0], &actions, &attr, argv, envp);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  close(out[1]);
  close(err[1]);
  out[1] = err[1] = -1;
  if (gated) {
    close(gate[0]);
    gate[0] = -1;
  }
  if (rc != 0) goto failed;
  s.gate = gate[1];
  char pid[24];
  snprintf(pid, sizeof pid, "%d", (int)s.pid);
  reply_str(id, "pid", pid);
  if (nshims == capshims) shims = xrealloc(shims, (capshims = capshims ? 2 * capshims : 64) * sizeof *shims);
  shims[nshims++] = s;
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

/* go: the shim may start its program; abort: it must not (it sees EOF). */
static void open_gate(const char *id, int go) {
  for (size_t k = 0; k < nshims; k++) {
    if (strcmp(shims[k].id, id) != 0 || shims[k].gate < 0) continue;
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
    if (argc == 0) reply_str(id, "error", "empty argv");
    else start(id, strcmp(gated, "1") == 0, argv, envp);
    free(argv);
    free(envp);
    consumed = pos;
  }
  memmove(req, req + consumed, reqlen - consumed);
  reqlen -= consumed;
}

int spawner_main(void) {
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
    size_t need = 2 + 2 * nshims + nwatches;
    if (need > pfcap) pf = xrealloc(pf, (pfcap = 2 * need) * sizeof *pf);
    pf[0] = (struct pollfd){.fd = STDIN_FILENO, .events = POLLIN};
    pf[1] = (struct pollfd){.fd = sfd, .events = POLLIN};
    for (size_t k = 0; k < nshims; k++) {
      pf[2 + 2 * k] = (struct pollfd){.fd = shims[k].out.fd, .events = POLLIN};
      pf[3 + 2 * k] = (struct pollfd){.fd = shims[k].err.fd, .events = POLLIN};
    }
    for (size_t w = 0; w < nwatches; w++) pf[2 + 2 * nshims + w] = (struct pollfd){.fd = watches[w].pidfd, .events = POLLIN};
    size_t polled = nshims, watched = nwatches;
    if (poll(pf, need, -1) < 0) {
      if (errno == EINTR) continue;
      die("poll");
    }
    /* Streams first, then the exits: a shim's last lines go out before its exit. */
    for (size_t k = polled; k-- > 0;) {
      if (pf[2 + 2 * k].revents && shims[k].out.fd >= 0) drain(k, &shims[k].out, "out");
      if (pf[3 + 2 * k].revents && shims[k].err.fd >= 0) drain(k, &shims[k].err, "err");
      finish_if_done(k);
    }
    for (size_t w = watched; w-- > 0;) {
      if (!pf[2 + 2 * polled + w].revents) continue;
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
