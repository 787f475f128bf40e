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
 * as "<ns>:<preemptions>", one line, space separated.  The clock is this thread's CPU time
 * (CLOCK_THREAD_CPUTIME_ID): dup_mmap() runs in the forking task, and time the task spends
 * preempted by the other work of a shared machine is not counted.
 *
 * Every timed fork starts from the same cache state and runs unpreempted:
 * - before it, the task writes a buffer of 4x the size of this CPU's L2 cache (sysfs
 *   cache/index2; 1 MiB if unknown; MADV_DONTFORK, so the fork does not copy it), so the
 *   parent's VMAs, AVCs, anon_vmas, page tables and struct pages are not in its private
 *   caches whatever the shape's size.  Without it, the repeated forks of a small shape find
 *   their objects in L2 and a large shape's do not.  The shared L3 is not evicted (a buffer
 *   of twice its size, 64 MiB per fork, floods the cache the machine's other work shares,
 *   and the fits scattered: worst held-out 24-39 %), so a shape whose objects outgrow this
 *   guest's share of the L3 still costs more per object.  Measured on the reference VM,
 *   time added per written depth-1 VMA: 1.01 us from 250 to 1,000 VMAs, 1.21 to 2,000, 1.30
 *   to 3,000, 1.47 to 4,000, 1.63 to 6,000; with the 64 MiB buffer 1.56-1.77 us at every
 *   size (every object from memory: no algorithmic growth left).  The fit spreads this
 *   over all sizes (docs/time-calibration.md).
 * - the task is pinned to one CPU (the chain and the children inherit it), so the buffer
 *   evicts the caches the shape's objects were written through.
 * - it runs as SCHED_FIFO (priority 1, SCHED_RESET_ON_FORK: the child is a normal task) when
 *   the task may (root), so no other task runs on its CPU between the buffer and the end of
 *   the fork: a fork longer than a scheduler tick on a loaded machine is otherwise preempted
 *   most times (4000 VMAs: 20 of 20 forks under a load of 3 on 2 CPUs) and refills its cache
 *   after each preemption.  The involuntary context switches of the task during the fork
 *   (getrusage(RUSAGE_THREAD) ru_nivcsw) are printed with it; the caller drops preempted
 *   samples (without SCHED_FIFO: every one of a large shape may be dropped). */
#include "bench.h"
#include <sys/resource.h>

/* the L2 cache of `cpu` in bytes (sysfs); 1 MiB if sysfs does not say */
static long l2_bytes(int cpu) {
    char path[96];
    snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%d/cache/index2/size", cpu);
    FILE *f = fopen(path, "r");
    long kib = 0;
    char unit = 'K';
    if (f) {
        if (fscanf(f, "%ld%c", &kib, &unit) < 1) kib = 0;
        fclose(f);
    }
    if (unit == 'M') kib *= 1024;
    return (kib > 0 ? kib : 1024) * 1024L;
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: forkbench vmas pages mode depth exited forks\n");
        return 2;
    }
    long vmas = atol(argv[1]), pages = atol(argv[2]), mode = atol(argv[3]);
    long depth = atol(argv[4]), exited = atol(argv[5]), forks = atol(argv[6]);
    long psz = sysconf(_SC_PAGESIZE);
    /* one CPU for the shape's setup and every fork (the chain and the children inherit it) */
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(sched_getcpu(), &one);
    if (sched_setaffinity(0, sizeof one, &one)) { perror("sched_setaffinity"); return 1; }
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
    long *t = calloc(forks, sizeof(long)), *pre = calloc(forks, sizeof(long));
    long evict = 4 * l2_bytes(sched_getcpu());      /* the CPU pinned to above */
    /* MADV_DONTFORK: dup_mmap() skips the buffer (VM_DONTCOPY), the fork copies none of it */
    volatile char *buf = mmap(NULL, evict, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buf == MAP_FAILED || madvise((char *)buf, evict, MADV_DONTFORK)) { perror("evict"); return 1; }
    memset((char *)buf, 1, evict);
    struct sched_param fifo = {.sched_priority = 1}, normal = {.sched_priority = 0};
    int rt = sched_setscheduler(0, SCHED_FIFO | SCHED_RESET_ON_FORK, &fifo) == 0;
    for (long i = 0; i < forks; i++) {
        struct rusage r0, r1;
        for (long o = 0; o < evict; o += 64) buf[o]++;
        getrusage(RUSAGE_THREAD, &r0);
        long t0 = cpu_ns();
        pid_t pid = fork();
        if (pid == 0) _exit(0);
        t[i] = cpu_ns() - t0;
        getrusage(RUSAGE_THREAD, &r1);
        pre[i] = r1.ru_nivcsw - r0.ru_nivcsw;
        if (pid < 0) { perror("fork"); return 1; }
        waitpid(pid, NULL, 0);
    }
    if (rt) sched_setscheduler(0, SCHED_OTHER, &normal);
    for (long i = 0; i < forks; i++)
        printf("%ld:%ld%c", t[i], pre[i], i + 1 < forks ? ' ' : '\n');
    fflush(stdout);
    close(hold[1]);
    return 0;
}
