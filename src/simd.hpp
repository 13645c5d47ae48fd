// Function multiversioning for the hot loops of the kernel rules: the build must run on any
// x86-64, but AVX-512 doubles the throughput of the pointwise rules, so such loops are compiled
// for three x86-64 levels and the best one the CPU supports is picked at load time (GCC
// target_clones; an ifunc, so not under the sanitizers).
#pragma once

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
#define NTK_SIMD_CLONES __attribute__((target_clones("default", "arch=x86-64-v3", "arch=x86-64-v4")))
#else
#define NTK_SIMD_CLONES
#endif
