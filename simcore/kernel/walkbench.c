/* Times rmap walks on this kernel: reclaim by MADV_PAGEOUT (used by `sweep calibrate`; needs
 * a swap device, which the calibration creates).
 *   walkbench <width> <depth> <pages> <reps>
 * The root process maps one private anonymous region of <pages> pages and writes it.  It then
 * forks <width> children and a chain of <depth> descendants; each of them COW-writes every
 * page (wp_page_copy(): its copies belong to its own anon_vma) and waits.  The root's pages
 * are exclusive again, so MADV_PAGEOUT reclaims them (madvise skips folios that may be mapped
 * shared), but the root's anon_vma interval tree still holds the VMA of every descendant.
 * The root then moves its region with mremap(): copy_vma() links its AVC again, after the
 * descendants' (equal start pgoff: the interval tree keeps insertion order), so try_to_unmap()
 * visits every descendant's VMA before it finds the root's mapping and stops.
 * Each repetition writes every page (untimed: swap-in), then times one MADV_PAGEOUT of the
 * region in this thread's CPU time (reclaim by madvise runs in the caller: shrink_folio_list,
 * try_to_unmap, the zram write).  Pages are filled with one repeated byte: zram stores them
 * as same-filled pages, without compression.  Prints "<ns>:<pages reclaimed>" per repetition
 * (reclaimed = pages no longer resident, from mincore()), one line, space separated. */
#include "bench.h"

static void write_all(volatile char *p, long pages, long psz, char v) {
    for (long j = 0; j < pages; j++) p[j * psz] = v;
}

int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: walkbench width depth pages reps\n"); return 2; }
    long width = atol(argv[1]), depth = atol(argv[2]), pages = atol(argv[3]), reps = atol(argv[4]);
    long psz = sysconf(_SC_PAGESIZE);
    /* one CPU: faulted pages reach the LRU through this CPU's batch, which madvise drains */
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(sched_getcpu(), &one);
    sched_setaffinity(0, sizeof one, &one);
    char *a = mmap((char *)0x200000000000UL, pages * psz, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    char *b = (char *)0x300000000000UL;
    if (a == MAP_FAILED) { perror("mmap"); return 1; }
    write_all(a, pages, psz, 1);
    int hold[2], ready[2];
    if (pipe(hold) || pipe(ready)) return 1;
    long made = 0;
    for (long k = 0; k < width + (depth > 0); k++) {   /* width children, then the chain */
        pid_t pid = fork();
        if (pid < 0) { perror("fork"); return 1; }
        if (pid > 0) { made++; continue; }
        close(hold[1]);
        close(ready[0]);
        long level = k < width ? 1 : depth;           /* a chain: fork on down to depth */
        for (long d = 1; d < level; d++) {
            write_all(a, pages, psz, 2);              /* COW: this level's own copies */
            if (write(ready[1], "r", 1) < 0) {}
            pid_t c = fork();
            if (c < 0) _exit(1);
            if (c > 0) {
                char x;
                if (read(hold[0], &x, 1) < 0) {}
                waitpid(c, NULL, 0);
                _exit(0);
            }
        }
        write_all(a, pages, psz, 2);
        if (write(ready[1], "r", 1) < 0) {}
        char x;
        if (read(hold[0], &x, 1) < 0) {}
        _exit(0);
    }
    close(ready[1]);
    long want = width + depth, got = 0;
    char x;
    while (got < want && read(ready[0], &x, 1) == 1) got++;
    if (got < want) { fprintf(stderr, "walkbench: descendants did not start\n"); return 1; }
    if (mremap(a, pages * psz, pages * psz, MREMAP_MAYMOVE | MREMAP_FIXED, b) == MAP_FAILED) {
        perror("mremap");
        return 1;
    }
    unsigned char *vec = malloc(pages);
    for (long r = 0; r < reps; r++) {
        write_all(b, pages, psz, 3);                  /* swap in: exclusive folios again */
        long t0 = cpu_ns();
        if (madvise(b, pages * psz, MADV_PAGEOUT)) { perror("madvise"); return 1; }
        long t = cpu_ns() - t0;
        long out = 0;
        if (mincore(b, pages * psz, vec)) { perror("mincore"); return 1; }
        for (long j = 0; j < pages; j++) out += !(vec[j] & 1);
        printf("%ld:%ld%c", t, out, r + 1 < reps ? ' ' : '\n');
    }
    fflush(stdout);
    close(hold[1]);
    for (long k = 0; k < made; k++) wait(NULL);
    return 0;
}
