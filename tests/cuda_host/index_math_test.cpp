// Host-side test of the CUDA kernels' index math past 2^31 elements, without a GPU or the
// memory: the grid the launchers pick (capped_blocks), the grid-stride loop's first index and
// step, and the element offsets the kernels form, for problem sizes beyond int32.
// Built by the host compiler and run by tests/cuda_host/test_launches.py.
#include <stdio.h>
#include <vector_types.h>

#include "cuda/box_iou_backward_kernels.cuh"
#include "cuda/box_loads.cuh"

using namespace alwa::cuda;

static int failures = 0;
#define EXPECT(cond)                                                 \
  do {                                                               \
    if (!(cond)) {                                                   \
      printf("FAILED line %d: %s\n", __LINE__, #cond);               \
      ++failures;                                                    \
    }                                                                \
  } while (0)

// Simulates box_loss_kernel's loop over `boxes` with the launcher's grid: each box must be
// visited once, and the largest element offset (4 * i + 3) must be exact in 64 bits.
static void check_box_loop(int64_t boxes, int64_t resident) {
  const uint32_t grid = capped_blocks(boxes, kThreadsPerBlock, resident);
  const int64_t step = grid_stride_step(grid, kThreadsPerBlock);
  int64_t visited = 0, last = -1;
  for (uint32_t block = 0; block < grid; ++block) {
    for (uint32_t thread = 0; thread < static_cast<uint32_t>(kThreadsPerBlock); ++thread) {
      const int64_t begin = grid_stride_begin(block, kThreadsPerBlock, thread);
      EXPECT(begin >= 0);
      if (begin >= boxes) continue;
      const int64_t iterations = (boxes - begin + step - 1) / step;
      const int64_t final_index = begin + (iterations - 1) * step;
      EXPECT(final_index < boxes && final_index + step >= boxes);
      visited += iterations;
      if (final_index > last) last = final_index;
    }
  }
  EXPECT(visited == boxes);
  EXPECT(last == boxes - 1);
  EXPECT(4 * last + 3 == 4 * boxes - 1);
}

int main() {
  const int64_t int32_max = 2147483647;
  // (2^29 + 3) boxes = 2^31 + 12 coordinates: past int32 in the element offsets.
  check_box_loop((int64_t(1) << 29) + 3, 132 * 8);
  // 2^33 + 5 boxes: past int32 in the box index itself, and past uint32.
  check_box_loop((int64_t(1) << 33) + 5, 132 * 8);
  // Fewer boxes than threads of one block, and exactly one block's worth.
  check_box_loop(1, 132 * 8);
  check_box_loop(kThreadsPerBlock, 132 * 8);
  EXPECT(capped_blocks(0, kThreadsPerBlock, 1000) == 1);
  EXPECT(capped_blocks(int64_t(1) << 40, kThreadsPerBlock, 1000) == 1000);

  // The same loop at the hardware's largest x grid: begin and step exceed 2^32 without wrapping.
  const uint32_t max_grid_x = 2147483647u;
  EXPECT(grid_stride_begin(max_grid_x - 1, 1024, 1023) == int64_t(max_grid_x) * 1024 - 1);
  EXPECT(grid_stride_step(max_grid_x, 1024) == int64_t(max_grid_x) * 1024);

  // box_iou's output offset (row0 + r) * n + j for an (m, n) matrix of 2^31 + pairs.
  const int64_t m = 70000, n = 40000;  // 2.8e9 pairs
  const int64_t last_row = m - 1, last_col = n - 1;
  EXPECT(last_row * n + last_col == m * n - 1);
  EXPECT(m * n - 1 > int32_max);
  const dim3 grid(capped_blocks(n, kThreadsPerBlock, kMaxGridDim),
                  capped_blocks(m, kIouTileRows, kMaxGridDim));
  EXPECT(int64_t(grid.x) * kThreadsPerBlock >= n);
  EXPECT(int64_t(grid.y) * kIouTileRows >= m);

  // box_iou_backward's chunking: chunks cover every pair once, in tile multiples, and the
  // partial buffer's offsets ((chunk * boxes + box) * 4 + k) stay exact.
  for (int64_t length : {int64_t(1), int64_t(255), int64_t(4096), int64_t(1) << 20, int64_t(3) << 30}) {
    for (int64_t owners : {int64_t(1), int64_t(7), int64_t(100000)}) {
      const IouGradSplit split = split_iou_grad(owners, length, kWarpsPerBlock, kIouTileCols,
                                                132 * 8, 4 * kIouTileCols);
      EXPECT(split.chunk % kIouTileCols == 0);
      EXPECT(split.num_chunks >= 1 && split.num_chunks <= kMaxGridDim);
      EXPECT(split.num_chunks * split.chunk >= length);
      EXPECT((split.num_chunks - 1) * split.chunk < length);
      EXPECT(split.blocks_x >= 1 && split.blocks_x <= kMaxGridDim);
      const int64_t last_offset = ((split.num_chunks - 1) * owners + owners - 1) * 4 + 3;
      EXPECT(last_offset == split.num_chunks * owners * 4 - 1);
    }
  }
  if (failures == 0) printf("index math ok\n");
  return failures == 0 ? 0 : 1;
}
