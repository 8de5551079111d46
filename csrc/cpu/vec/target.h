// What a vector translation unit (vec_avx2.cpp, vec_avx512.cpp) needs before
// it switches its target ISA: the standard and intrinsics headers (included here, before the
// switch, so none of their code is compiled for the wider ISA) and the switch itself.
#pragma once

#include <math.h>
#include <stdint.h>
#include <string.h>

#include <type_traits>
#include <utility>

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define ALWA_VEC_X86 1
#include <immintrin.h>
#else
#define ALWA_VEC_X86 0
#endif

#define ALWA_VEC_STRING(x) #x
// Every function defined between ALWA_VEC_TARGET_PUSH("isa,...") and ALWA_VEC_TARGET_POP() is
// compiled for that ISA: the build needs no per-file flags.
#if defined(__clang__)
#define ALWA_VEC_TARGET_PUSH(isa) \
  _Pragma(ALWA_VEC_STRING(clang attribute push(__attribute__((target(isa))), apply_to = function)))
#define ALWA_VEC_TARGET_POP() _Pragma("clang attribute pop")
#else
#define ALWA_VEC_TARGET_PUSH(isa) _Pragma("GCC push_options") _Pragma(ALWA_VEC_STRING(GCC target(isa)))
#define ALWA_VEC_TARGET_POP() _Pragma("GCC pop_options")
#endif
