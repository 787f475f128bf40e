/*
 * anonsim trace executor: one process per trace process.
 *
 * Usage: executor DIR TRACEPID ALARM_SECONDS
 *
 * The process chdir()s to DIR, opens the FIFOs cmd.TRACEPID (read) and
 * ack.TRACEPID (write) that the harness created there, acknowledges with
 * "ok <realpid>" and then executes one command line at a time, answering each
 * with "ok", "ok <pid>" or "err <errno> <command>".  Commands are listed in
 * compile.py.  "fork CHILD": the child switches to the FIFOs of trace pid CHILD
 * and acknowledges there with its real pid; the parent answers "ok <childpid>".
 * "exec" re-executes /proc/self/exe, which acknowledges like a fresh start.
 * "exit" calls _exit(0) without answering.
 *
 * The program uses no stdio and no malloc: every buffer is static and written
 * once at start-up, so trace and control runs differ only by the trace's own
 * operations.  SIGCHLD is ignored (children are reaped automatically) and an
 * alarm, re-armed at every command, ends a forgotten process.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define BUF 4096
#define MAXFILES 4096
#define PAGE 4096UL

static char inbuf[BUF];          /* bytes read from the command FIFO */
static size_t inlen;
static char line[BUF];           /* the current command, NUL-terminated */
static char out[128];            /* the acknowledgement being built */
static char name[64];            /* FIFO names */
static char pidarg[32], alarmarg[32];
static int fds[MAXFILES];        /* slot -> open file descriptor */
static int cmdfd = -1, ackfd = -1;
static long tpid;
static unsigned alarm_s;
static char *dirarg;
static volatile char sink;

static char *put_str(char *p, const char *s) { while (*s) *p++ = *s++; return p; }

static char *put_num(char *p, long v)
{
	char tmp[24];
	int n = 0;
	if (v < 0) { *p++ = '-'; v = -v; }
	do { tmp[n++] = (char)('0' + v % 10); v /= 10; } while (v);
	while (n) *p++ = tmp[--n];
	return p;
}

static void send_ack(char *end)
{
	*end++ = '\n';
	size_t len = (size_t)(end - out), done = 0;
	while (done < len) {
		ssize_t n = write(ackfd, out + done, len - done);
		if (n < 0 && errno == EINTR) continue;
		if (n <= 0) _exit(5);
		done += (size_t)n;
	}
}

static void ack_ok(void) { send_ack(put_str(out, "ok")); }
static void ack_pid(long pid) { send_ack(put_num(put_str(out, "ok "), pid)); }

static void ack_err(int err, const char *what)
{
	char *p = put_num(put_str(out, "err "), err);
	*p++ = ' ';
	send_ack(put_str(p, what));
}

static int open_fifo(const char *prefix, int flags)
{
	*put_num(put_str(name, prefix), tpid) = 0;
	return open(name, flags | O_CLOEXEC);
}

static void open_fifos(void)
{
	cmdfd = open_fifo("cmd.", O_RDONLY);
	ackfd = open_fifo("ack.", O_WRONLY);
	if (cmdfd < 0 || ackfd < 0) _exit(4);
}

/* Read one command line into line[]; exit when the harness has gone. */
static void read_line(void)
{
	for (;;) {
		char *nl = memchr(inbuf, '\n', inlen);
		if (nl) {
			size_t len = (size_t)(nl - inbuf);
			memcpy(line, inbuf, len);
			line[len] = 0;
			inlen -= len + 1;
			memmove(inbuf, nl + 1, inlen);
			return;
		}
		if (inlen == BUF) _exit(6);
		ssize_t n = read(cmdfd, inbuf + inlen, BUF - inlen);
		if (n < 0 && errno == EINTR) continue;
		if (n <= 0) _exit(0);
		inlen += (size_t)n;
	}
}

static char *cursor;

static char *word(void)
{
	while (*cursor == ' ') cursor++;
	char *start = cursor;
	while (*cursor && *cursor != ' ') cursor++;
	if (*cursor) *cursor++ = 0;
	return start;
}

static long long num(void) { return strtoll(word(), NULL, 0); }
static void *ptr(void) { return (void *)(unsigned long)strtoull(word(), NULL, 0); }

static void do_exec(void)
{
	char *argv[] = {"anonsim-executor", dirarg, pidarg, alarmarg, NULL};
	char *envp[] = {NULL};
	*put_num(pidarg, tpid) = 0;
	*put_num(alarmarg, (long)alarm_s) = 0;
	execve("/proc/self/exe", argv, envp);
	ack_err(errno, "exec");
}

static void run(void)
{
	for (;;) {
		read_line();
		alarm(alarm_s);
		cursor = line;
		char *cmd = word();
		int rc = 0;
		if (!strcmp(cmd, "touch")) {
			volatile char *p = ptr();
			long n = (long)num(), w = (long)num();
			for (long i = 0; i < n; i++) {
				if (w) p[i * PAGE] = 1;
				else sink = p[i * PAGE];
			}
		} else if (!strcmp(cmd, "mmap")) {
			void *addr = ptr();
			size_t len = (size_t)num();
			int prot = (int)num(), flags = (int)num();
			long slot = (long)num();
			off_t off = (off_t)num();
			int fd = -1;
			if (slot >= 0 && (slot >= MAXFILES || (fd = fds[slot]) < 0)) {
				ack_err(EBADF, "mmap");
				continue;
			}
			void *got = mmap(addr, len, prot, flags, fd, off);
			if (got == MAP_FAILED) rc = -1;
			else if (got != addr) { munmap(got, len); errno = EEXIST; rc = -1; }
		} else if (!strcmp(cmd, "open")) {
			long slot = (long)num();
			char *path = word();
			if (slot < 0 || slot >= MAXFILES) { ack_err(EMFILE, "open"); continue; }
			if ((fds[slot] = open(path, O_RDWR | O_CLOEXEC)) < 0) rc = -1;
		} else if (!strcmp(cmd, "mprotect")) {
			void *addr = ptr();
			size_t len = (size_t)num();
			rc = mprotect(addr, len, (int)num());
		} else if (!strcmp(cmd, "munmap")) {
			void *addr = ptr();
			rc = munmap(addr, (size_t)num());
		} else if (!strcmp(cmd, "mremap")) {
			void *addr = ptr();
			size_t old = (size_t)num(), new = (size_t)num();
			void *got = mremap(addr, old, new, 0);
			if (got == MAP_FAILED) rc = -1;
			else if (got != addr) { errno = EFAULT; rc = -1; }
		} else if (!strcmp(cmd, "mmove")) {
			/* one call even when the range spans several VMAs: since 6.17 the
			 * kernel's remap_move() moves each of them, keeping the gaps */
			void *addr = ptr();
			size_t len = (size_t)num();
			void *dst = ptr();
			void *got = mremap(addr, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, dst);
			if (got == MAP_FAILED) rc = -1;
			else if (got != dst) { errno = EFAULT; rc = -1; }
		} else if (!strcmp(cmd, "madvise")) {
			void *addr = ptr();
			size_t len = (size_t)num();
			rc = madvise(addr, len, (int)num());
		} else if (!strcmp(cmd, "mlock")) {
			void *addr = ptr();
			rc = mlock(addr, (size_t)num());
		} else if (!strcmp(cmd, "munlock")) {
			void *addr = ptr();
			rc = munlock(addr, (size_t)num());
		} else if (!strcmp(cmd, "fork")) {
			long child = (long)num();
			pid_t pid = fork();
			if (pid == 0) {
				close(cmdfd);
				close(ackfd);
				inlen = 0;
				tpid = child;
				alarm(alarm_s);
				open_fifos();
				ack_pid(getpid());
				continue;
			}
			if (pid < 0) rc = -1;
			else { ack_pid(pid); continue; }
		} else if (!strcmp(cmd, "exec")) {
			do_exec();
			continue;
		} else if (!strcmp(cmd, "exit")) {
			_exit(0);
		} else {
			errno = EINVAL;
			rc = -1;
		}
		if (rc) ack_err(errno, cmd);
		else ack_ok();
	}
}

int main(int argc, char **argv)
{
	if (argc != 4) _exit(2);
	dirarg = argv[1];
	if (chdir(dirarg)) _exit(3);
	tpid = strtol(argv[2], NULL, 10);
	alarm_s = (unsigned)strtoul(argv[3], NULL, 10);
	signal(SIGCHLD, SIG_IGN);
	/* write every static buffer now, so no later command faults one in */
	for (int i = 0; i < MAXFILES; i++) fds[i] = -1;
	memset(inbuf, 0, sizeof inbuf);
	memset(line, 0, sizeof line);
	memset(out, 0, sizeof out);
	memset(name, 0, sizeof name);
	memset(pidarg, 0, sizeof pidarg);
	memset(alarmarg, 0, sizeof alarmarg);
	sink = 0;
	alarm(alarm_s);
	open_fifos();
	ack_pid(getpid());
	run();
	return 0;
}
