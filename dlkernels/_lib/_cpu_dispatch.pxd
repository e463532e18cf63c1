# The one way a kernel carries an AVX2+FMA copy of a hot function beside the
# baseline x86-64 one and picks it at run time. Wheels are built for the
# baseline, so without this the AVX2 units of most CPUs would sit idle.
#
# Write the function once as NAME_body, a DLK_ALWAYS_INLINE function whose
# first parameter `fused` is always a constant, and whose multiply-adds are
# DLK_MADD(fused, a, b, c) (double) or DLK_MADDF (float); then
#
#     DLK_DISPATCH_VOID(NAME, (params...), args...)        for a void function
#     DLK_DISPATCH(RET, NAME, (params...), args...)        for one that returns RET
#
# define NAME_avx2 (the body compiled for AVX2+FMA, fused multiply-adds),
# NAME_any (the baseline, plain multiply then add) and NAME, which calls the
# AVX2 copy where the CPU has AVX2 and FMA. The check is __builtin_cpu_supports,
# made once and cached; call dlk_cpu_avx2_fma() at import to make it then and
# to report it. It works with GCC and clang on any x86-64 OS (no ifunc, unlike
# target_clones, which needs glibc); elsewhere NAME is the baseline body.
#
# Include it with `from dlkernels._lib._cpu_dispatch cimport dlk_cpu_avx2_fma`
# before the module's own `cdef extern from *` block that uses the macros.

cdef extern from *:
    """
    #ifndef DLKERNELS_CPU_DISPATCH
    #define DLKERNELS_CPU_DISPATCH
    #include <math.h>

    #if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
        #define DLK_DISPATCH_X86 1
        #define DLK_TARGET_AVX2 __attribute__((target("avx2,fma")))
        #define DLK_ALWAYS_INLINE static inline __attribute__((always_inline))
    #else
        #define DLK_DISPATCH_X86 0
        #define DLK_TARGET_AVX2
        #define DLK_ALWAYS_INLINE static inline
    #endif

    /* One rounding in the AVX2 copies (fma compiles to one instruction there);
       the baseline copies never reach fma (FUSED is a constant 0). */
    #define DLK_MADD(FUSED, a, b, c) ((FUSED) ? fma((a), (b), (c)) : (a) * (b) + (c))
    #define DLK_MADDF(FUSED, a, b, c) ((FUSED) ? fmaf((a), (b), (c)) : (a) * (b) + (c))

    /* -1 until checked; the check is idempotent, so threads racing on the
       first call only repeat it. */
    static int dlk_avx2_fma_state = -1;

    static int dlk_cpu_avx2_fma(void) {
    #if DLK_DISPATCH_X86
        if (dlk_avx2_fma_state < 0) {
            __builtin_cpu_init();
            dlk_avx2_fma_state = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        }
        return dlk_avx2_fma_state;
    #else
        return 0;
    #endif
    }

    #if DLK_DISPATCH_X86
        #define DLK_DISPATCH_VOID(NAME, PARAMS, ...)                                       \\
            DLK_TARGET_AVX2 static void NAME##_avx2 PARAMS { NAME##_body(1, __VA_ARGS__); } \\
            static void NAME##_any PARAMS { NAME##_body(0, __VA_ARGS__); }                \\
            static void NAME PARAMS {                                                     \\
                if (dlk_cpu_avx2_fma()) NAME##_avx2(__VA_ARGS__); else NAME##_any(__VA_ARGS__); \\
            }
        #define DLK_DISPATCH(RET, NAME, PARAMS, ...)                                       \\
            DLK_TARGET_AVX2 static RET NAME##_avx2 PARAMS { return NAME##_body(1, __VA_ARGS__); } \\
            static RET NAME##_any PARAMS { return NAME##_body(0, __VA_ARGS__); }          \\
            static RET NAME PARAMS {                                                      \\
                return dlk_cpu_avx2_fma() ? NAME##_avx2(__VA_ARGS__) : NAME##_any(__VA_ARGS__); \\
            }
    #else
        #define DLK_DISPATCH_VOID(NAME, PARAMS, ...) \\
            static void NAME PARAMS { NAME##_body(0, __VA_ARGS__); }
        #define DLK_DISPATCH(RET, NAME, PARAMS, ...) \\
            static RET NAME PARAMS { return NAME##_body(0, __VA_ARGS__); }
    #endif
    #endif
    """
    int dlk_cpu_avx2_fma() noexcept nogil
