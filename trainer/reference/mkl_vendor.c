/* For the PyTorch reference in trainer/bench.sh: preloaded (LD_PRELOAD), it gives PyTorch's MKL the
 * same answer tinygpt-train's executable gives (trainer/src/mkl.rs): "use the kernels for this
 * instruction set" on any x86-64 CPU with AVX2 and FMA, whatever its vendor. So the benchmark can
 * compare both programs on the same matrix kernels as well as PyTorch as installed. */
int mkl_serv_intel_cpu_true(void) {
    __builtin_cpu_init();
    return __builtin_cpu_is("intel") || (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"));
}
