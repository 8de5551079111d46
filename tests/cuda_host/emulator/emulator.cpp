// The host execution of CUDA launches (emulator.h): fibers, the scheduler and the collectives.
#include "emulator.h"

#include <cxxabi.h>
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <mutex>
#include <sstream>
#include <stdexcept>

#if !defined(__x86_64__) || defined(CUDA_HOST_UCONTEXT)
#define CUDA_HOST_USE_UCONTEXT 1
#include <ucontext.h>
#endif

// CUDA's built-in variables: the scheduler sets them before it resumes a thread.
uint3 threadIdx;
uint3 blockIdx;
dim3 blockDim;
dim3 gridDim;

namespace cuda_host {

DeviceProperties& device_properties() {
  static DeviceProperties properties;
  return properties;
}

Schedule& schedule() {
  static Schedule order = Schedule::Forward;
  return order;
}

std::vector<Launch>& launch_log() {
  static std::vector<Launch> log;
  return log;
}

namespace {

constexpr int kWarpSize = 32;
constexpr size_t kStackBytes = 256 * 1024;  // the kernels use a few KiB; mapped lazily
constexpr size_t kGuardBytes = 4096;        // below each stack: an overflow faults at once

// ----------------------------------------------------------------------------- contexts

#if defined(CUDA_HOST_USE_UCONTEXT)
struct Context {
  ucontext_t uc;
};
#else
struct Context {
  void* sp = nullptr;
};
#endif

void fiber_main();

#if !defined(CUDA_HOST_USE_UCONTEXT)
// Saves the callee-saved registers and the SSE/x87 control words on the current stack, stores
// the stack pointer in *save and continues on the stack `load` (which was saved the same way,
// or laid out by start_context).
extern "C" void cuda_host_switch(void** save, void* load);
extern "C" void cuda_host_fiber_start();
asm(R"(
  .text
  .p2align 4
  .globl cuda_host_switch
  .hidden cuda_host_switch
  .type cuda_host_switch,@function
cuda_host_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size cuda_host_switch,.-cuda_host_switch

  .p2align 4
  .globl cuda_host_fiber_start
  .hidden cuda_host_fiber_start
  .type cuda_host_fiber_start,@function
cuda_host_fiber_start:
  callq *%r12
  ud2
  .size cuda_host_fiber_start,.-cuda_host_fiber_start
)");

// A fresh context on [stack, stack + bytes) that enters fiber_main. The frame is what
// cuda_host_switch pops: control words, r15..rbp (r12 = the entry), the return address; the
// stack is 16-byte aligned where cuda_host_fiber_start calls the entry, as the ABI requires.
void start_context(Context& context, char* stack, size_t bytes) {
  auto top = reinterpret_cast<uintptr_t>(stack + bytes) & ~uintptr_t(15);
  auto* frame = reinterpret_cast<uint64_t*>(top) - 8;
  uint32_t mxcsr;
  uint16_t fpu_control;
  asm volatile("stmxcsr %0" : "=m"(mxcsr));
  asm volatile("fnstcw %0" : "=m"(fpu_control));
  frame[0] = 0;
  memcpy(&frame[0], &mxcsr, sizeof(mxcsr));
  memcpy(reinterpret_cast<char*>(&frame[0]) + 4, &fpu_control, sizeof(fpu_control));
  frame[1] = frame[2] = 0;                                // r15, r14
  frame[3] = 0;                                           // r13
  frame[4] = reinterpret_cast<uint64_t>(&fiber_main);     // r12
  frame[5] = frame[6] = 0;                                // rbx, rbp
  frame[7] = reinterpret_cast<uint64_t>(&cuda_host_fiber_start);
  context.sp = frame;
}

void switch_context(Context& from, Context& to) { cuda_host_switch(&from.sp, to.sp); }
#else
void start_context(Context& context, char* stack, size_t bytes) {
  getcontext(&context.uc);
  context.uc.uc_stack.ss_sp = stack;
  context.uc.uc_stack.ss_size = bytes;
  context.uc.uc_link = nullptr;
  makecontext(&context.uc, &fiber_main, 0);
}

void switch_context(Context& from, Context& to) { swapcontext(&from.uc, &to.uc); }
#endif

// One stack per thread of the largest block so far, each above a guard page; reused.
class Stacks {
 public:
  char* get(size_t i) { return base_ + i * kSlot + kGuardBytes; }

  void reserve(size_t count) {
    if (count <= count_) return;
    if (base_ != nullptr) munmap(base_, count_ * kSlot);
    void* p = mmap(nullptr, count * kSlot, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) throw std::runtime_error("cuda_host: cannot map the threads' stacks");
    base_ = static_cast<char*>(p);
    count_ = count;
    for (size_t i = 0; i < count; ++i) mprotect(base_ + i * kSlot, kGuardBytes, PROT_NONE);
  }

 private:
  static constexpr size_t kSlot = kStackBytes + kGuardBytes;
  char* base_ = nullptr;
  size_t count_ = 0;
};

// ----------------------------------------------------------------------------- threads

enum class State { Ready, AtBarrier, AtWarp, Returned };

struct Thread {
  Context context;
  uint3 index;
  State state = State::Ready;
  // Where it waits.
  Site site{nullptr, 0, -1};
  // Its warp operation.
  WarpOp op = WarpOp::SyncWarp;
  unsigned mask = 0;
  uint64_t value = 0, result = 0;
  int param = 0, width = kWarpSize;
};

struct Block {
  std::vector<Thread> threads;  // by linear index: x fastest, as CUDA numbers lanes
  Thread* current = nullptr;
  Context scheduler;
  ThreadBody body = nullptr;
  void* closure = nullptr;
  std::string fault;  // set by a thread that faulted; the launch then fails
};

Block* active = nullptr;  // the block being run (launches hold launch_mutex)
Stacks stacks;
std::mutex launch_mutex;

std::string describe_thread(const Thread& t) {
  std::ostringstream out;
  out << "block (" << blockIdx.x << ", " << blockIdx.y << ", " << blockIdx.z << ") thread ("
      << t.index.x << ", " << t.index.y << ", " << t.index.z << ")";
  return out.str();
}

std::string where(const Site& site) {
  const char* file = site.file != nullptr ? site.file : "?";
  const char* slash = strrchr(file, '/');
  return std::string(slash != nullptr ? slash + 1 : file) + ":" + std::to_string(site.line);
}

bool same_site(const Site& a, const Site& b) { return a.id == b.id && a.file == b.file; }

Block& current_block(const char* what) {
  if (active == nullptr || active->current == nullptr) {
    throw std::logic_error(std::string("cuda_host: ") + what + " called outside a kernel");
  }
  return *active;
}

// Back to the scheduler; returns when the scheduler resumes this thread.
void wait_here(Block& block) {
  Thread& self = *block.current;
  switch_context(self.context, block.scheduler);
}

void fiber_main() {
  Block& block = *active;
  Thread& self = *block.current;
  try {
    block.body(block.closure);
  } catch (const std::exception& e) {
    block.fault = describe_thread(self) + ": " + e.what();
  } catch (...) {
    block.fault = describe_thread(self) + ": an exception";
  }
  self.state = State::Returned;
  switch_context(self.context, block.scheduler);
  abort();  // a returned thread is never resumed
}

void resume(Block& block, Thread& t) {
  threadIdx = t.index;
  block.current = &t;
  switch_context(block.scheduler, t.context);
  block.current = nullptr;
}

[[noreturn]] void fail(const std::string& message) { throw std::runtime_error("cuda_host: " + message); }

// The warp operations of one warp that can complete, completed; true if any did.
bool release_warp(Block& block, size_t first, size_t count) {
  bool released = false;
  for (size_t l = 0; l < count; ++l) {
    Thread& t = block.threads[first + l];
    if (t.state != State::AtWarp) continue;
    if ((t.mask >> l & 1u) == 0) {
      fail(describe_thread(t) + ": warp operation at " + where(t.site) +
           " with a mask that leaves out its own lane");
    }
    bool complete = true;
    for (int k = 0; k < kWarpSize; ++k) {
      if ((t.mask >> k & 1u) == 0) continue;
      if (static_cast<size_t>(k) >= count) {
        fail(describe_thread(t) + ": warp operation at " + where(t.site) + " names lane " +
             std::to_string(k) + ", which this block does not have");
      }
      const Thread& other = block.threads[first + k];
      if (other.state == State::Returned) {
        fail(describe_thread(t) + ": warp operation at " + where(t.site) + " names lane " +
             std::to_string(k) + ", which has returned");
      }
      if (other.state != State::AtWarp) {
        complete = false;
        continue;
      }
      if (!same_site(other.site, t.site) || other.op != t.op ||
          other.mask != t.mask || other.width != t.width) {
        fail(describe_thread(t) + ": lanes " + std::to_string(l) + " and " + std::to_string(k) +
             " meet at different warp operations (" + where(t.site) + ", " +
             where(other.site) + ") or with different masks");
      }
    }
    if (!complete) continue;
    const unsigned mask = t.mask;
    const int width = t.width;
    if (width < 1 || width > kWarpSize || (width & (width - 1)) != 0) {
      fail(describe_thread(t) + ": warp operation at " + where(t.site) + " with width " +
           std::to_string(width) + " (a power of two up to 32)");
    }
    uint64_t ballot = 0;
    for (int k = 0; k < kWarpSize; ++k) {
      if ((mask >> k & 1u) != 0 && block.threads[first + k].value != 0) ballot |= uint64_t(1) << k;
    }
    for (int k = 0; k < kWarpSize; ++k) {
      if ((mask >> k & 1u) == 0) continue;
      Thread& member = block.threads[first + k];
      const int segment = k - k % width;
      int source = k;
      switch (member.op) {
        case WarpOp::Shfl:
          source = segment + ((member.param % width) + width) % width;
          break;
        case WarpOp::ShflUp:
          if (k % width >= member.param) source = k - member.param;
          break;
        case WarpOp::ShflDown:
          if (k % width + member.param < width) source = k + member.param;
          break;
        case WarpOp::ShflXor:
          source = k ^ member.param;
          if (source >= segment + width) source = k;
          break;
        case WarpOp::SyncWarp:
        case WarpOp::Ballot:
          break;
      }
      if (source < 0 || source >= kWarpSize || (mask >> source & 1u) == 0) {
        fail(describe_thread(member) + ": shuffle at " + where(member.site) +
             " reads lane " + std::to_string(source) + ", outside its mask (undefined on a GPU)");
      }
      member.result = member.op == WarpOp::Ballot ? ballot : block.threads[first + source].value;
    }
    for (int k = 0; k < kWarpSize; ++k) {
      if ((mask >> k & 1u) != 0) block.threads[first + k].state = State::Ready;
    }
    released = true;
  }
  return released;
}

bool release_barrier(Block& block) {
  const Thread* first = nullptr;
  for (const Thread& t : block.threads) {
    if (t.state == State::Returned) continue;
    if (t.state != State::AtBarrier) return false;
    if (first == nullptr) {
      first = &t;
    } else if (!same_site(t.site, first->site)) {
      fail(describe_thread(*first) + " waits at __syncthreads " + where(first->site) +
           " and thread (" + std::to_string(t.index.x) + ", " + std::to_string(t.index.y) + ", " +
           std::to_string(t.index.z) + ") at " + where(t.site) +
           " (a barrier in divergent code)");
    }
  }
  if (first == nullptr) return false;
  for (Thread& t : block.threads) {
    if (t.state == State::AtBarrier) t.state = State::Ready;
  }
  return true;
}

[[noreturn]] void deadlock(const Block& block) {
  std::ostringstream out;
  out << "block (" << blockIdx.x << ", " << blockIdx.y << ", " << blockIdx.z
      << ") can make no progress (a GPU would hang):";
  int shown = 0;
  for (const Thread& t : block.threads) {
    if (t.state == State::Returned) continue;
    if (++shown > 4) {
      out << " ...";
      break;
    }
    out << " thread (" << t.index.x << ", " << t.index.y << ", " << t.index.z << ") waits at "
        << (t.state == State::AtBarrier ? "__syncthreads " : "a warp operation ")
        << where(t.site) << ";";
  }
  fail(out.str());
}

void run_block(Block& block) {
  const size_t n = block.threads.size();
  for (size_t i = 0; i < n; ++i) {
    Thread& t = block.threads[i];
    t.state = State::Ready;
    t.site = Site{nullptr, 0, -1};
    start_context(t.context, stacks.get(i), kStackBytes);
  }
  const bool reverse = schedule() == Schedule::Reverse;
  for (;;) {
    for (size_t k = 0; k < n; ++k) {
      Thread& t = block.threads[reverse ? n - 1 - k : k];
      if (t.state != State::Ready) continue;
      resume(block, t);
      if (!block.fault.empty()) fail(block.fault);
    }
    bool all_returned = true;
    for (const Thread& t : block.threads) all_returned = all_returned && t.state == State::Returned;
    if (all_returned) return;
    bool released = false;
    for (size_t first = 0; first < n; first += kWarpSize) {
      released = release_warp(block, first, std::min<size_t>(kWarpSize, n - first)) || released;
    }
    if (!released) released = release_barrier(block);
    if (!released) deadlock(block);
  }
}

std::string kernel_name(const void* kernel) {
  Dl_info info;
  if (kernel == nullptr || dladdr(kernel, &info) == 0 || info.dli_sname == nullptr) return "?";
  int status = 0;
  char* demangled = abi::__cxa_demangle(info.dli_sname, nullptr, nullptr, &status);
  std::string name = status == 0 && demangled != nullptr ? demangled : info.dli_sname;
  free(demangled);
  return name;
}

void check_configuration(const std::string& kernel, dim3 grid, dim3 block) {
  const uint64_t threads = uint64_t(block.x) * block.y * block.z;
  const bool valid = grid.x >= 1 && grid.y >= 1 && grid.z >= 1 && grid.x <= 2147483647u &&
                     grid.y <= 65535 && grid.z <= 65535 && block.x >= 1 && block.y >= 1 &&
                     block.z >= 1 && block.x <= 1024 && block.y <= 1024 && block.z <= 64 &&
                     threads <= 1024;
  if (!valid) {
    std::ostringstream out;
    out << "invalid configuration argument: " << kernel << " with grid (" << grid.x << ", "
        << grid.y << ", " << grid.z << ") and block (" << block.x << ", " << block.y << ", "
        << block.z << ")";
    fail(out.str());
  }
}

}  // namespace

void run_grid(const void* kernel, dim3 grid, dim3 block_dim, ThreadBody body, void* closure) {
  const std::lock_guard<std::mutex> lock(launch_mutex);
  if (active != nullptr) fail("a launch from inside a kernel (dynamic parallelism) is not modelled");
  const std::string name = kernel_name(kernel);
  check_configuration(name, grid, block_dim);
  launch_log().push_back(Launch{name, grid, block_dim});

  const size_t n = size_t(block_dim.x) * block_dim.y * block_dim.z;
  stacks.reserve(n);
  Block block;
  block.body = body;
  block.closure = closure;
  block.threads.resize(n);
  for (size_t i = 0; i < n; ++i) {
    block.threads[i].index = uint3{static_cast<unsigned>(i % block_dim.x),
                                   static_cast<unsigned>(i / block_dim.x % block_dim.y),
                                   static_cast<unsigned>(i / (size_t(block_dim.x) * block_dim.y))};
  }
  gridDim = grid;
  blockDim = block_dim;
  active = &block;
  try {
    for (unsigned z = 0; z < grid.z; ++z) {
      for (unsigned y = 0; y < grid.y; ++y) {
        for (unsigned x = 0; x < grid.x; ++x) {
          blockIdx = uint3{x, y, z};
          run_block(block);
        }
      }
    }
  } catch (...) {
    active = nullptr;
    throw;
  }
  active = nullptr;
}

void sync_threads(Site site) {
  Block& block = current_block("__syncthreads");
  Thread& self = *block.current;
  self.state = State::AtBarrier;
  self.site = site;
  wait_here(block);
}

uint64_t warp_collective(WarpOp op, Site site, unsigned mask, uint64_t value, int param,
                         int width) {
  Block& block = current_block("a warp operation");
  Thread& self = *block.current;
  self.state = State::AtWarp;
  self.site = site;
  self.op = op;
  self.mask = mask;
  self.value = value;
  self.param = param;
  self.width = width;
  wait_here(block);
  return self.result;
}

void fault(const std::string& what) {
  Block& block = current_block("a fault");
  Thread& self = *block.current;
  block.fault = describe_thread(self) + ": " + what;
  self.state = State::Returned;
  switch_context(self.context, block.scheduler);
  abort();  // never resumed: the launch fails
}

void device_assert_fail(const char* assertion, const char* file, unsigned line,
                        const char* function) {
  if (active == nullptr || active->current == nullptr) {
    fprintf(stderr, "%s:%u: %s: assertion failed: %s\n", file, line, function, assertion);
    abort();
  }
  fault(std::string("device-side assert triggered at ") + where(Site{file, static_cast<int>(line), 0}) +
        " (" + function + "): " + assertion);
}

void check_aligned(const void* ptr, size_t bytes, const char* what) {
  if (reinterpret_cast<uintptr_t>(ptr) % bytes != 0) {
    std::ostringstream out;
    out << "misaligned address: " << what << " of " << bytes << " bytes at " << ptr;
    fault(out.str());
  }
}

}  // namespace cuda_host
