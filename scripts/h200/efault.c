/* What the driver answers for bad tenant pointers, one line per case, so the output with and
 * without librmshim.so can be compared line for line (the driver's answers are the oracle).
 * Build: gcc -O2 -o efault efault.c    Run: ./efault; LD_PRELOAD=librmshim.so ./efault */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define NV_IOWR(nr, size) (0xC0000000u | ((unsigned)(size) << 16) | ('F' << 8) | (nr))
#define NV_ESC_RM_FREE 0x29
#define NV_ESC_RM_CONTROL 0x2a
#define NV_ESC_RM_ALLOC 0x2b

struct nvos21 { uint32_t hRoot, hObjectParent, hObjectNew, hClass; uint64_t pAllocParms; uint32_t paramsSize, status; };
struct nvos54 { uint32_t hClient, hObject, cmd, flags; uint64_t params; uint32_t paramsSize, status; };

static void report(const char *name, int rc, int err, uint32_t status) {
    printf("%-28s rc=%d errno=%d status=0x%x\n", name, rc, rc < 0 ? err : 0, status);
}

int main(void) {
    int fd = open("/dev/nvidiactl", O_RDWR);
    if (fd < 0) { perror("open /dev/nvidiactl"); return 1; }
    void *unmapped = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    void *ro = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    /* The frame itself unreadable, or readable but not writable (the driver writes status). */
    int rc = ioctl(fd, NV_IOWR(NV_ESC_RM_CONTROL, 32), unmapped);
    report("control frame unmapped", rc, errno, 0);
    rc = ioctl(fd, NV_IOWR(NV_ESC_RM_CONTROL, 32), ro);
    report("control frame read-only", rc, errno, 0);
    rc = ioctl(fd, NV_IOWR(NV_ESC_RM_FREE, 16), unmapped);
    report("free frame unmapped", rc, errno, 0);
    /* A frame that starts on a good page and runs into an unmapped one. */
    char *two = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    munmap(two + 4096, 4096);
    rc = ioctl(fd, NV_IOWR(NV_ESC_RM_CONTROL, 32), two + 4096 - 16);
    report("control frame straddles", rc, errno, 0);
    /* A good frame whose params pointer is bad. */
    struct nvos21 a = { .hClass = 0x41 };
    rc = ioctl(fd, NV_IOWR(NV_ESC_RM_ALLOC, sizeof a), &a);
    report("root client", rc, errno, a.status);
    struct nvos54 c = { .hClient = a.hObjectNew, .hObject = a.hObjectNew, .cmd = 0x201,
                        .params = (uintptr_t)unmapped, .paramsSize = 128 };
    rc = ioctl(fd, NV_IOWR(NV_ESC_RM_CONTROL, sizeof c), &c);
    report("control params unmapped", rc, errno, c.status);
    c.params = (uintptr_t)ro; c.status = 0;
    rc = ioctl(fd, NV_IOWR(NV_ESC_RM_CONTROL, sizeof c), &c);
    report("control params read-only", rc, errno, c.status);
    uint32_t ids[32];
    memset(ids, 0, sizeof ids);
    c.params = (uintptr_t)ids; c.status = 0;
    rc = ioctl(fd, NV_IOWR(NV_ESC_RM_CONTROL, sizeof c), &c);
    report("control params good", rc, errno, c.status);
    close(fd);
    return 0;
}
