// portable build of kernels_impl.h (compiler flags set per target in binding.gyp).
#define DR_W 4
#define DR_MR 6
#define DR_NV 2
#define DR_NAMESPACE portable
#define DR_TABLE_FN kernel_table_portable
#define DR_ISA_NAME "portable"
#include "kernels_impl.h"
