// vecadd: copies two vectors to the GPU, adds them there, copies the sum back and checks every
// element on the CPU. Exit status 0 only when all match.
#include <cstdio>
#include <vector>
#include <cuda_runtime.h>

__global__ void add(const float *a, const float *b, float *c, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) c[i] = a[i] + b[i];
}

int main() {
    const int n = 1 << 22;
    std::vector<float> a(n), b(n), c(n, -1.0f);
    for (int i = 0; i < n; i++) { a[i] = 0.25f * i; b[i] = 3.0f - i; }
    float *da, *db, *dc;
    if (cudaMalloc(&da, n * 4) || cudaMalloc(&db, n * 4) || cudaMalloc(&dc, n * 4)) { printf("vecadd: cudaMalloc failed\n"); return 1; }
    cudaMemcpy(da, a.data(), n * 4, cudaMemcpyHostToDevice);
    cudaMemcpy(db, b.data(), n * 4, cudaMemcpyHostToDevice);
    add<<<(n + 255) / 256, 256>>>(da, db, dc, n);
    cudaError_t e = cudaMemcpy(c.data(), dc, n * 4, cudaMemcpyDeviceToHost);
    long bad = 0;
    for (int i = 0; i < n; i++) bad += c[i] != a[i] + b[i];
    printf("vecadd n=%d mismatches=%ld status=%s\n", n, bad, cudaGetErrorString(e));
    cudaFree(da); cudaFree(db); cudaFree(dc);
    return (bad == 0 && e == cudaSuccess) ? 0 : 1;
}
