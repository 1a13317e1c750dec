// escbench: round-trip time of one RM_CONTROL (NV0000_CTRL_CMD_GPU_GET_ATTACHED_IDS on the
// process's own client), 20000 calls after 1000 warm-up calls; prints p50/p99 in microseconds.
// Run it plain and with LD_PRELOAD=librmshim.so to get the interposer's cost per escape.
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

struct nvos21 { uint32_t hRoot, hParent, hNew, hClass; uint64_t pAlloc; uint32_t size, status; };
struct nvos54 { uint32_t hClient, hObject, cmd, flags; uint64_t params; uint32_t size, status; };
static double now_us(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e6 + t.tv_nsec / 1e3; }
static int cmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return x < y ? -1 : x > y; }

int main(int argc, char **argv) {
    const char *label = argc > 1 ? argv[1] : "run";
    int fd = open("/dev/nvidiactl", O_RDWR);
    if (fd < 0) { perror("open /dev/nvidiactl"); return 1; }
    uint32_t hclient = 0;
    struct nvos21 a = { 0, 0, 0, 0x41, (uint64_t)(uintptr_t)&hclient, 4, 0 };
    if (ioctl(fd, _IOWR('F', 0x2B, struct nvos21), &a) || a.status) { fprintf(stderr, "alloc client failed: %x\n", a.status); return 1; }
    enum { N = 20000, WARM = 1000 };
    static double d[N];
    uint32_t ids[32];
    for (int i = 0; i < N + WARM; i++) {
        struct nvos54 c = { a.hNew, a.hNew, 0x201, 0, (uint64_t)(uintptr_t)ids, sizeof ids, 0 };
        double t0 = now_us();
        int r = ioctl(fd, _IOWR('F', 0x2A, struct nvos54), &c);
        double dt = now_us() - t0;
        if (r || c.status) { fprintf(stderr, "control failed: r=%d status=%x\n", r, c.status); return 1; }
        if (i >= WARM) d[i - WARM] = dt;
    }
    qsort(d, N, sizeof d[0], cmp);
    printf("ESCBENCH %s p50_us=%.3f p99_us=%.3f min_us=%.3f gpu0=%#x\n", label, d[N / 2], d[N * 99 / 100], d[0], ids[0]);
    return 0;
}
