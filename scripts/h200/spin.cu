// spin: keeps the GPU busy with fixed-length kernels, `depth` at a time, and prints its progress
// as "TICK <tag> <unix seconds> <kernels completed>" every 100 ms so that several tenants' rates
// can be compared over the same wall-clock window.
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <cuda_runtime.h>

__global__ void burn(float *out, int iters) {
    float x = threadIdx.x * 1e-3f, y = 1.0001f;
    for (int i = 0; i < iters; i++) { x = x * y + 1e-7f; y = y * 0.99999f + 1e-6f; }
    if (x == -1.0f) out[blockIdx.x] = x + y;
}

static double wall() { timespec t; clock_gettime(CLOCK_REALTIME, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

int main(int argc, char **argv) {
    if (argc < 5) { fprintf(stderr, "usage: spin SECONDS ITERS DEPTH TAG\n"); return 2; }
    double secs = atof(argv[1]); int iters = atoi(argv[2]), depth = atoi(argv[3]); const char *tag = argv[4];
    int sms = 0; cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
    float *out; if (cudaMalloc(&out, 4096 * sizeof(float)) != cudaSuccess) { fprintf(stderr, "spin %s: cudaMalloc failed\n", tag); return 1; }
    burn<<<sms * 4, 256>>>(out, iters);
    cudaError_t e = cudaDeviceSynchronize();
    if (e != cudaSuccess) { fprintf(stderr, "spin %s: %s\n", tag, cudaGetErrorString(e)); return 1; }
    double t0 = wall(), next = t0; long n = 0;
    printf("START %s %.6f\n", tag, t0); fflush(stdout);
    while (wall() - t0 < secs) {
        for (int d = 0; d < depth; d++) burn<<<sms * 4, 256>>>(out, iters);
        e = cudaDeviceSynchronize();
        if (e != cudaSuccess) { fprintf(stderr, "spin %s: %s\n", tag, cudaGetErrorString(e)); return 1; }
        n += depth;
        double t = wall();
        if (t >= next) { printf("TICK %s %.6f %ld\n", tag, t, n); fflush(stdout); next = t + 0.1; }
    }
    printf("END %s %.6f %ld\n", tag, wall(), n);
    return 0;
}
