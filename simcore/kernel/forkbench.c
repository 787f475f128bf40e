/* Times fork() on this kernel for one process shape (used by `sweep calibrate`).
 *   forkbench <vmas> <pages_per_vma> <mode> <depth> <exited> <forks>
 * Maps <vmas> private anonymous regions with a one-page gap between them (no merges), then
 * by <mode>: 0 leaves them untouched (no anon_vma: dup_mmap skips copy_page_range),
 * 1 writes every page, 2 writes every page and drops the pages again by MADV_DONTNEED in the
 * timed process (each VMA keeps its anon_vma and AVCs, but has no PTE to copy).
 * A fork chain <depth> deep follows; with <exited> 0 the ancestors stay alive, with 1 the
 * ancestors between the root and the timed process exit before the timing starts, so that
 * anon_vma_clone() reuses the first one's anon_vma (num_active_vmas 0, num_children 1) and
 * the timed fork allocates no anon_vma.  Live depth 1 and exited depth 2 clone the same
 * AVCs into interval trees of the same sizes (the root stays alive in both): such a pair
 * differs only in the anon_vma allocated.  The last descendant times <forks>
 * forks (each child exits at once and is reaped before the next) and prints every latency
 * in ns, one line, space separated.  The clock is this thread's CPU time
 * (CLOCK_THREAD_CPUTIME_ID): dup_mmap() runs in the forking task, and time the task spends
 * preempted by the other work of a shared machine is not counted. */
#include "bench.h"

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: forkbench vmas pages mode depth exited forks\n");
        return 2;
    }
    long vmas = atol(argv[1]), pages = atol(argv[2]), mode = atol(argv[3]);
    long depth = atol(argv[4]), exited = atol(argv[5]), forks = atol(argv[6]);
    long psz = sysconf(_SC_PAGESIZE);
    char *base = (char *)0x200000000000UL;
    for (long i = 0; i < vmas; i++) {
        char *p = mmap(base + i * (pages + 1) * psz, pages * psz, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
        if (p == MAP_FAILED) { perror("mmap"); return 1; }
        if (mode)
            for (long j = 0; j < pages; j++) p[j * psz] = 1;
    }
    int hold[2], gone[2];
    if (pipe(hold) || pipe(gone)) return 1;
    for (long d = 0; d < depth; d++) {
        pid_t pid = fork();
        if (pid < 0) { perror("fork"); return 1; }
        if (pid > 0) {
            char b;
            close(gone[0]);
            if (exited && d > 0) _exit(0);   /* exit_mm() runs before exit_files() closes gone[1] */
            close(gone[1]);
            close(hold[1]);                  /* live ancestors wait until the end */
            if (read(hold[0], &b, 1) < 0) {}
            waitpid(pid, NULL, 0);
            _exit(0);
        }
    }
    close(gone[1]);
    char b;
    while (read(gone[0], &b, 1) > 0) {}      /* EOF: every exiting ancestor has dropped its mm */
    if (mode == 2)
        for (long i = 0; i < vmas; i++)
            madvise(base + i * (pages + 1) * psz, pages * psz, MADV_DONTNEED);
    long *t = calloc(forks, sizeof(long));
    for (long i = 0; i < forks; i++) {
        long t0 = cpu_ns();
        pid_t pid = fork();
        if (pid == 0) _exit(0);
        t[i] = cpu_ns() - t0;
        if (pid < 0) { perror("fork"); return 1; }
        waitpid(pid, NULL, 0);
    }
    for (long i = 0; i < forks; i++) printf("%ld%c", t[i], i + 1 < forks ? ' ' : '\n');
    fflush(stdout);
    close(hold[1]);
    return 0;
}
