/* Times fork() on this kernel for one process shape (used by `sweep calibrate`).
 *   forkbench <vmas> <pages_per_vma> <written 0|1> <depth> <forks>
 * Maps <vmas> private anonymous regions with a one-page gap between them, writes every page
 * if asked, forks a chain <depth> deep (ancestors stay alive), then the last descendant
 * times <forks> forks (child exits at once) and prints the median latency in ns. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

static int cmp(const void *a, const void *b) {
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc != 6) { fprintf(stderr, "usage: forkbench vmas pages written depth forks\n"); return 2; }
    long vmas = atol(argv[1]), pages = atol(argv[2]), written = atol(argv[3]);
    long depth = atol(argv[4]), forks = atol(argv[5]);
    long psz = sysconf(_SC_PAGESIZE);
    char *base = (char *)0x200000000000UL;
    for (long i = 0; i < vmas; i++) {
        char *p = mmap(base + i * (pages + 1) * psz, pages * psz, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
        if (p == MAP_FAILED) { perror("mmap"); return 1; }
        if (written)
            for (long j = 0; j < pages; j++) p[j * psz] = 1;
    }
    int hold[2];
    if (pipe(hold)) return 1;
    for (long d = 0; d < depth; d++) {           /* ancestors wait until the end */
        pid_t pid = fork();
        if (pid < 0) return 1;
        if (pid > 0) {
            char b;
            close(hold[1]);
            if (read(hold[0], &b, 1) < 0) {}
            waitpid(pid, NULL, 0);
            _exit(0);
        }
    }
    long *t = calloc(forks, sizeof(long));
    for (long i = 0; i < forks; i++) {
        long t0 = now_ns();
        pid_t pid = fork();
        if (pid == 0) _exit(0);
        t[i] = now_ns() - t0;
        waitpid(pid, NULL, 0);
    }
    qsort(t, forks, sizeof(long), cmp);
    printf("%ld\n", t[forks / 2]);
    fflush(stdout);
    close(hold[1]);
    return 0;
}
