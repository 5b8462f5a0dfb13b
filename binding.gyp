{
  "targets": [
    {
      "target_name": "tether_native",
      "sources": [
        "native/src/addon.cc",
        "native/src/token.cc",
        "native/src/aead.cc",
        "native/src/hmac.cc",
        "native/src/client_hello.cc",
        "native/src/listen_socket.cc",
        "native/src/malloc_tuning.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "native/include"
      ],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED", "NAPI_DISABLE_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17"],
      "cflags": ["-Wall", "-Wextra", "-Werror", "-fvisibility=hidden"],
      "cflags_cc": ["-std=c++20", "-Wall", "-Wextra", "-Werror", "-fvisibility=hidden", "-O3"]
    },
    {
      "target_name": "tether_table_bench",
      "sources": ["native/bench/table_get.cc"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-Wall", "-Wextra", "-Werror", "-fvisibility=hidden"],
      "cflags_cc!": ["-std=gnu++17"],
      "cflags_cc": ["-std=c++20", "-Wall", "-Wextra", "-Werror", "-fvisibility=hidden", "-O3"]
    }
  ]
}
