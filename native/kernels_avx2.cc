// avx2 build of kernels_impl.h (compiler flags set per target in binding.gyp).
#if defined(__x86_64__)
#define DR_W 8
#define DR_MR 6
#define DR_NV 2
#define DR_NAMESPACE avx2
#define DR_TABLE_FN kernel_table_avx2
#define DR_ISA_NAME "avx2"
#include "kernels_impl.h"
#endif
