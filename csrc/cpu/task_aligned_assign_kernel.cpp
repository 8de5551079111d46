// CPU kernel of task_aligned_assign: the steps of alwa/task_aligned_assign.h, one image a
// task (threads over images). A gt's candidates are found through an index of the anchors
// sorted by (y, x), built once a call: a gt looks at the anchors inside its region (and a
// binary search a row of anchors), never at the others, and no (gt, anchor) array is made.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "common/backend.h"
#include "cpu/reused_buffer.h"
#include "task_aligned_assign_plan.h"

namespace alwa {
namespace {

// The anchors sorted by (y, x, index), in runs of equal y; anchors with a NaN coordinate are
// left out (no region holds them).
template <class T>
struct AnchorIndex {
  std::vector<int64_t> order;  // anchor indices, sorted
  std::vector<T> xs;           // their x
  std::vector<T> row_y;        // the y of each run
  std::vector<int64_t> row_begin;  // where each run starts in `order`, and the end

  AnchorIndex(const T* anchors, int64_t num_anchors) {
    for (int64_t a = 0; a < num_anchors; ++a) {
      const T x = anchors[2 * a], y = anchors[2 * a + 1];
      if (x == x && y == y) order.push_back(a);
    }
    std::sort(order.begin(), order.end(), [&](int64_t i, int64_t j) {
      const T yi = anchors[2 * i + 1], yj = anchors[2 * j + 1];
      if (yi != yj) return yi < yj;
      const T xi = anchors[2 * i], xj = anchors[2 * j];
      if (xi != xj) return xi < xj;
      return i < j;
    });
    xs.reserve(order.size());
    for (size_t k = 0; k < order.size(); ++k) {
      const T y = anchors[2 * order[k] + 1];
      if (k == 0 || y != row_y.back()) {
        row_y.push_back(y);
        row_begin.push_back(static_cast<int64_t>(k));
      }
      xs.push_back(anchors[2 * order[k]]);
    }
    row_begin.push_back(static_cast<int64_t>(order.size()));
  }

  // Calls visit(anchor) for every anchor inside `region`: the rows between two binary searches,
  // in each row the run between two more. (Each of the four tests is monotonic along its axis.)
  template <class Visit>
  void for_each_inside(const CandidateRegion<T>& region, Visit&& visit) const {
    const auto rows_begin = std::partition_point(row_y.begin(), row_y.end(), [&](T y) { return !below_top(region, y); });
    const auto rows_end = std::partition_point(rows_begin, row_y.end(), [&](T y) { return above_bottom(region, y); });
    for (auto row = rows_begin; row < rows_end; ++row) {
      const size_t r = static_cast<size_t>(row - row_y.begin());
      const auto first = xs.begin() + row_begin[r], last = xs.begin() + row_begin[r + 1];
      const auto run_begin = std::partition_point(first, last, [&](T x) { return !right_of_left(region, x); });
      const auto run_end = std::partition_point(run_begin, last, [&](T x) { return left_of_right(region, x); });
      for (auto it = run_begin; it < run_end; ++it) visit(order[static_cast<size_t>(it - xs.begin())]);
    }
  }
};

template <class T>
struct Positive {
  int64_t anchor;
  T metric, overlap;
};

template <class T>
bool positive_ranks_above(const Positive<T>& p, const Positive<T>& q) {
  return ranks_above(p.metric, p.anchor, q.metric, q.anchor);
}

// The top `k` of `ranked` (sorted by rank: step 3's or 5's candidates of one gt) over all
// anchors, where every anchor not in `ranked` has metric 0 and `is_zero(a)` says whether anchor
// a has metric 0 (outside `ranked`, or in it at 0): those ranking above 0, then the anchors of
// metric 0 in index order, then the negative ones. Returns the entries of `ranked` taken.
template <class T, class IsZero>
std::vector<Positive<T>> top_over_all_anchors(const std::vector<Positive<T>>& ranked, int64_t k,
                                              int64_t num_anchors, IsZero&& is_zero) {
  std::vector<Positive<T>> taken;
  size_t next = 0;
  while (next < ranked.size() && static_cast<int64_t>(taken.size()) < k && ranks_above_zero(ranked[next].metric)) {
    taken.push_back(ranked[next++]);
  }
  int64_t slots = k - static_cast<int64_t>(taken.size());
  if (slots == 0) return taken;
  // Metric-0 anchors by index; those of `ranked` are taken with their entry. The scan stops
  // after `slots` of them (typically the first few anchors of the image).
  std::vector<int64_t> zeros_in_ranked;
  for (int64_t a = 0; a < num_anchors && slots > 0; ++a) {
    if (!is_zero(a)) continue;
    --slots;
    zeros_in_ranked.push_back(a);
  }
  for (size_t i = next; i < ranked.size(); ++i) {
    if (ranked[i].metric == T(0) &&
        std::binary_search(zeros_in_ranked.begin(), zeros_in_ranked.end(), ranked[i].anchor)) {
      taken.push_back(ranked[i]);
    }
  }
  // Every anchor of metric 0 taken and slots left: the negative ones, in rank order.
  for (size_t i = next; i < ranked.size() && slots > 0; ++i) {
    if (ranked[i].metric < T(0)) {
      taken.push_back(ranked[i]);
      --slots;
    }
  }
  return taken;
}

template <class score_t, class T>
void assign_image(const TalArgs<score_t, T>& args, const AnchorIndex<T>& index, int64_t b) {
  const int64_t A = args.num_anchors, n = args.num_gt, k = args.params.topk;
  const T* anchors = args.anchors;
  // Steps 1-3: each valid gt's positives.
  std::vector<std::vector<Positive<T>>> positives(n);
  for (int64_t j = 0; j < n; ++j) {
    if (!args.valid[b * n + j]) continue;
    const CandidateRegion<T> region = candidate_region(gt_box(args, b, j), args.params.min_side);
    std::vector<Positive<T>> top;  // the best k candidates, sorted by rank
    top.reserve(static_cast<size_t>(k) + 1);
    index.for_each_inside(region, [&](int64_t a) {
      const PairMetric<T> pm = gt_anchor_metric(args, b, j, a, region);
      const Positive<T> p{a, pm.metric, pm.overlap};
      if (static_cast<int64_t>(top.size()) == k && !positive_ranks_above(p, top.back())) return;
      top.insert(std::upper_bound(top.begin(), top.end(), p, positive_ranks_above<T>), p);
      if (static_cast<int64_t>(top.size()) > k) top.pop_back();
    });
    positives[j] = top_over_all_anchors(top, k, A, [&](int64_t a) {
      if (!inside(region, anchors[2 * a], anchors[2 * a + 1])) return true;
      return gt_anchor_metric(args, b, j, a, region).metric == T(0);
    });
  }
  // Step 4: an anchor of one gt keeps it; one of several goes to the largest overlap.
  std::vector<int32_t> count(static_cast<size_t>(A), 0);
  for (const auto& list : positives) {
    for (const auto& p : list) ++count[static_cast<size_t>(p.anchor)];
  }
  std::vector<int64_t> assigned(static_cast<size_t>(A), -1);
  std::vector<Positive<T>> assigned_pair(static_cast<size_t>(A));
  for (int64_t j = 0; j < n; ++j) {
    for (const auto& p : positives[j]) {
      const size_t a = static_cast<size_t>(p.anchor);
      if (assigned[a] >= 0) continue;
      if (count[a] == 1) {
        assigned[a] = j;
        assigned_pair[a] = p;
        continue;
      }
      const int64_t best = largest_overlap_gt(args, b, p.anchor);
      PairMetric<T> pm{T(0), T(0)};
      if (args.valid[b * n + best]) {
        pm = gt_anchor_metric(args, b, best, p.anchor,
                              candidate_region(gt_box(args, b, best), args.params.min_side));
      }
      assigned[a] = best;
      assigned_pair[a] = Positive<T>{p.anchor, pm.metric, pm.overlap};
    }
  }
  // The positives of each gt after step 4.
  std::vector<std::vector<Positive<T>>> of_gt(n);
  for (int64_t a = 0; a < A; ++a) {
    if (assigned[a] >= 0) of_gt[assigned[a]].push_back(assigned_pair[a]);
  }
  // Step 5: each gt keeps its top topk2 (among every anchor, the others at metric 0).
  if (args.params.topk2 != k) {
    for (int64_t j = 0; j < n; ++j) {
      auto& list = of_gt[j];
      if (list.empty()) continue;
      std::sort(list.begin(), list.end(), positive_ranks_above<T>);
      std::vector<Positive<T>> kept = top_over_all_anchors(list, args.params.topk2, A, [&](int64_t a) {
        return assigned[a] != j || assigned_pair[a].metric == T(0);
      });
      for (const auto& p : list) assigned[p.anchor] = -1;
      for (const auto& p : kept) assigned[p.anchor] = j;
      list = std::move(kept);
    }
  }
  // Step 6: each gt's largest positive metric and overlap (torch's amax over all anchors, the
  // others at 0), then every anchor's targets.
  std::vector<T> max_metric(n, T(0)), max_overlap(n, T(0));
  for (int64_t j = 0; j < n; ++j) {
    const bool every_anchor = static_cast<int64_t>(of_gt[j].size()) == A;  // no 0 in the maximum
    if (every_anchor) {
      max_metric[j] = of_gt[j][0].metric;
      max_overlap[j] = of_gt[j][0].overlap;
    }
    for (const auto& p : of_gt[j]) {
      max_metric[j] = nan_max(max_metric[j], p.metric);
      max_overlap[j] = nan_max(max_overlap[j], p.overlap);
    }
  }
  for (int64_t a = 0; a < A; ++a) {
    const int64_t j = assigned[a];
    const T score = j >= 0 ? target_score(assigned_pair[a].metric, max_overlap[j], max_metric[j],
                                          args.params.eps, n > 1)
                           : T(0);
    write_anchor_targets(args, b, a, j, score);
  }
}

// Labels are read here, on the host: a CPU call can refuse one out of range (the CUDA kernel,
// which must not synchronise, asserts on the device instead).
void check_labels(const TalPlan& plan) {
  const int64_t* labels = plan.labels.const_data_ptr<int64_t>();
  const bool* valid = plan.valid.const_data_ptr<bool>();
  for (int64_t i = 0; i < plan.batch * plan.num_gt; ++i) {
    TORCH_CHECK_VALUE(!valid[i] || tal_label_valid(labels[i], plan.num_classes),
                      "gt_labels: expected class indices in [0, ", plan.num_classes,
                      ") for the boxes mask_gt marks, got ", labels[i], " at image ", i / plan.num_gt, ", box ",
                      i % plan.num_gt);
  }
}

// The target scores are the size of the class logits (43 MB for YOLOv8 at batch 16): the last
// call's memory is reused once released (cpu/reused_buffer.h), as the losses' gradients are.
at::Tensor reused_scores(at::IntArrayRef sizes, const at::TensorOptions& options) {
  static auto* buffer = new cpu::ReusedBuffer();  // never deleted: see cpu/reused_buffer.h
  return buffer->empty(sizes, options);
}

void run_task_aligned_assign_cpu(TalPlan& plan) {
  check_labels(plan);
  dispatch_tal_types(plan, [&](auto score_tag, auto box_tag) {
    using score_t = decltype(score_tag);
    using T = decltype(box_tag);
    const auto args = make_tal_args<score_t, T>(plan);
    const AnchorIndex<T> index(args.anchors, args.num_anchors);
    at::parallel_for(0, plan.batch, 1, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) assign_image(args, index, b);
    });
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(alwa, CPU, m) { TalOps<run_task_aligned_assign_cpu, NoDeviceGuard, reused_scores>::register_in(m); }

}  // namespace alwa
