/* Times anonymous write faults on this kernel for one shape (used by `sweep calibrate`).
 *   faultbench <mode> <vmas> <pages_per_vma> <reps>
 * Maps <vmas> private anonymous regions of <pages_per_vma> pages, a one-page gap between
 * them (no merges, no shared anon_vma), then times one write to every page of every region
 * (CPU time of this thread, so preemption by other work is not counted), by <mode>:
 *   new       fresh regions: each region's first fault runs anon_vma_prepare() (an anon_vma
 *             and an AVC), every fault do_anonymous_page() (a zeroed page)
 *   prepared  page 0 of each region written before the timing: the timed faults find the
 *             anon_vma in place (pages_per_vma - 1 timed faults per region)
 *   cow       every page written, then a child forked that waits: the timed writes copy
 *             pages still mapped by the child (wp_page_copy())
 *   reuse     every page written, then a child forked that exits at once: the timed writes
 *             find pages mapped only here and reuse them (wp_page_reuse())
 * Repeats <reps> times on fresh regions and prints each repetition's total in ns, one line,
 * space separated. */
#include "bench.h"

int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: faultbench new|prepared|cow|reuse vmas pages reps\n"); return 2; }
    const char *mode = argv[1];
    long vmas = atol(argv[2]), pages = atol(argv[3]), reps = atol(argv[4]);
    int new = !strcmp(mode, "new"), prepared = !strcmp(mode, "prepared");
    int cow = !strcmp(mode, "cow"), reuse = !strcmp(mode, "reuse");
    if (!(new || prepared || cow || reuse)) { fprintf(stderr, "faultbench: unknown mode %s\n", mode); return 2; }
    long psz = sysconf(_SC_PAGESIZE);
    char *base = (char *)0x200000000000UL;
    long span = vmas * (pages + 1) * psz;
    for (long r = 0; r < reps; r++) {
        for (long i = 0; i < vmas; i++) {
            char *p = mmap(base + i * (pages + 1) * psz, pages * psz, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
            if (p == MAP_FAILED) { perror("mmap"); return 1; }
            if (prepared) p[0] = 1;
            if (cow || reuse)
                for (long j = 0; j < pages; j++) p[j * psz] = 1;
        }
        int hold[2];
        pid_t child = -1;
        if (cow || reuse) {
            if (pipe(hold)) return 1;
            child = fork();
            if (child < 0) { perror("fork"); return 1; }
            if (child == 0) {
                char b;
                close(hold[1]);
                if (cow && read(hold[0], &b, 1) < 0) {}
                _exit(0);
            }
            close(hold[0]);
            if (reuse) { waitpid(child, NULL, 0); child = -1; }
        }
        long first = prepared ? 1 : 0;
        long t0 = cpu_ns();
        for (long i = 0; i < vmas; i++) {
            volatile char *p = base + i * (pages + 1) * psz;
            for (long j = first; j < pages; j++) p[j * psz] = 2;
        }
        long t = cpu_ns() - t0;
        if (cow || reuse) {
            close(hold[1]);
            if (child > 0) waitpid(child, NULL, 0);
        }
        munmap(base, span);
        printf("%ld%c", t, r + 1 < reps ? ' ' : '\n');
    }
    fflush(stdout);
    return 0;
}
