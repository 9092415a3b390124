// avx512 build of kernels_impl.h (compiler flags set per target in binding.gyp).
#if defined(__x86_64__)
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12's own avx512fintrin.h trips -Wmaybe-uninitialized (its `__m512 __Y = __Y;` idiom, GCC bug 105593).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#define DR_W 16
#define DR_MR 6
#define DR_NV 4
#define DR_NAMESPACE avx512
#define DR_TABLE_FN kernel_table_avx512
#define DR_ISA_NAME "avx512"
#include "kernels_impl.h"
#endif
