{
  "target_defaults": {
    "cflags!": ["-fno-exceptions"],
    "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++20"],
    "cflags_cc": ["-std=c++17", "-O3", "-fPIC", "-fno-math-errno", "-ffp-contract=fast", "-fexceptions"],
    "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
    "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"]
  },
  "targets": [
    {
      "target_name": "deltarec_kernels_portable",
      "type": "static_library",
      "sources": ["native/kernels_portable.cc"]
    },
    {
      "target_name": "deltarec_kernels_avx2",
      "type": "static_library",
      "sources": ["native/kernels_avx2.cc"],
      "conditions": [["target_arch=='x64'", { "cflags_cc": ["-mavx2", "-mfma"] }]]
    },
    {
      "target_name": "deltarec_kernels_avx512",
      "type": "static_library",
      "sources": ["native/kernels_avx512.cc"],
      "conditions": [
        ["target_arch=='x64'", { "cflags_cc": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma", "-mprefer-vector-width=512"] }]
      ]
    },
    {
      "target_name": "deltarec_native",
      "sources": ["native/addon.cc", "native/pool.cc"],
      "dependencies": ["deltarec_kernels_portable", "deltarec_kernels_avx2", "deltarec_kernels_avx512"],
      "libraries": ["-lpthread"]
    }
  ]
}
