/* Measures the cheapest hardware operations the kernel must perform per unit of each cost
 * model, on this host (used by `sweep calibrate` as lower bounds of the fitted coefficients):
 *   syscall  a getppid() round trip (every fault enters and leaves the kernel at least once)
 *   atomic   one lock-prefixed read-modify-write on a cache-hot line (a refcount or mapcount
 *            update, one side of an uncontended rwsem)
 *   clear    zeroing one 4 KiB page (do_anonymous_page() clears a new page)
 *   copy     copying one 4 KiB page (wp_page_copy() copies the old page)
 *   line     writing one 64-byte cache line of a fresh object (slab object initialisation)
 *   floorbench <reps>   prints "name ns" lines: the median over <reps> timed batches. */
#include "bench.h"

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#define N 4096L
#define POOL (64L << 20)            /* larger than any cache: each page is cold */

int main(int argc, char **argv) {
    long reps = argc > 1 ? atol(argv[1]) : 9;
    double *t = calloc(reps, sizeof(double));
    char *pool = malloc(POOL), *src = malloc(4096);
    memset(pool, 1, POOL);
    memset(src, 2, 4096);
    static volatile long word;
    const char *names[] = {"syscall", "atomic", "clear", "copy", "line"};
    for (int k = 0; k < 5; k++) {
        for (long r = 0; r < reps; r++) {
            long t0 = cpu_ns(), off = 0;
            for (long i = 0; i < N; i++) {
                switch (k) {
                case 0: getppid(); break;
                case 1: __atomic_fetch_add(&word, 1, __ATOMIC_SEQ_CST); break;
                case 2: memset(pool + off, 0, 4096); break;
                case 3: memcpy(pool + off, src, 4096); break;
                case 4: memset(pool + off, 0, 64); break;
                }
                off = (off + 4096) % POOL;
                __asm__ volatile("" ::: "memory");
            }
            t[r] = (double)(cpu_ns() - t0) / N;
        }
        qsort(t, reps, sizeof(double), cmp);
        printf("%s %.2f\n", names[k], t[reps / 2]);
    }
    return 0;
}
