// The task-aligned assignment (Feng et al., TOOD, 2021) as ultralytics' TaskAlignedAssigner
// computes it, written once for the CPU and CUDA kernels. Torch-free. Per image, with ground
// truths j (valid ones: mask_gt) and anchors a:
//
//  1. Candidates: anchor centres strictly inside gt j's box, the box widened about its centre to
//     at least `min_side` along each axis (ultralytics' stride_val); "inside" is ultralytics'
//     test, each of the four centre-to-side distances > kInsideEps, in the boxes' dtype.
//  2. The alignment metric of a candidate: score(a, label_j)^alpha * overlap^beta, overlap the
//     CIoU of gt j and the predicted box (iou_losses.h's, eps kOverlapEps; ultralytics puts its
//     eps elsewhere: docs/api.md), clamped at 0; non-candidates have metric and overlap 0.
//  3. Each valid gt takes its top `topk` anchors by metric over all anchors (non-candidates
//     included, at 0); the taken candidates are its positives.
//  4. An anchor positive for several gts goes to the gt of the largest overlap with it, over all
//     gts (ties: the lowest gt index), even one that did not take it.
//  5. With topk2 != topk, each gt keeps the top `topk2` of its positives by metric.
//  6. Targets: the gt's label and box; the score at the label is the anchor's metric times the
//     gt's largest positive overlap over (its largest positive metric + eps).
//
// Ranking (steps 3 and 5) is a strict order: a larger metric first, NaN above every number,
// and among equal metrics the lower anchor index (CUDA's torch.topk takes exact ties in index
// order too; the CPU's takes some of them in the order of its heap: docs/api.md).
#pragma once

#include <stdint.h>

#include "alwa/box_math.h"

namespace alwa {

// ultralytics' constants: the inside test's margin and bbox_iou's eps.
constexpr double kInsideEps = 1e-9;
constexpr double kOverlapEps = 1e-7;

// How a power x^p is taken: as torch's pow(tensor, scalar) takes the exponents ultralytics and
// mmdet use (0.5 a square root, 1, 2 and 3 products), else pow. Chosen on the host.
enum class PowerForm : int { General = 0, One = 1, Half = 2, Two = 3, Three = 4 };

inline PowerForm power_form(double p) {
  if (p == 1.0) return PowerForm::One;
  if (p == 0.5) return PowerForm::Half;
  if (p == 2.0) return PowerForm::Two;
  if (p == 3.0) return PowerForm::Three;
  return PowerForm::General;
}

template <class T>
ALWA_HD_INLINE T power(T x, T p, PowerForm form) {
  using namespace math;
  switch (form) {
    case PowerForm::One: return x;
    case PowerForm::Half: return sqrt_(x);
    case PowerForm::Two: return x * x;
    case PowerForm::Three: return x * x * x;
    default: return pow_(x, p);
  }
}

template <class T>
struct TalParams {
  int64_t topk, topk2;
  T alpha, beta;
  PowerForm alpha_form, beta_form;
  T eps;       // of the normalisation (step 6)
  T min_side;  // of the candidate region (step 1); 0: the box itself
  bool logits;  // scores given as logits: sigmoid(x) = 1 / (1 + exp(-x)) of each one read
};

// Gt j's candidate region (step 1), computed as ultralytics does (xyxy -> centre and size, the
// size floored at min_side, back to xyxy), so that its bits, and so the inside test, agree.
template <class T>
struct CandidateRegion {
  T x1, y1, x2, y2;
};

template <class T>
ALWA_HD_INLINE CandidateRegion<T> candidate_region(const T* gt, T min_side) {
  const T cx = (gt[0] + gt[2]) / T(2), cy = (gt[1] + gt[3]) / T(2);
  T w = gt[2] - gt[0], h = gt[3] - gt[1];
  if (w < min_side) w = min_side;
  if (h < min_side) h = min_side;
  const T half_w = w / T(2), half_h = h / T(2);
  return CandidateRegion<T>{cx - half_w, cy - half_h, cx + half_w, cy + half_h};
}

// The four tests of "inside", separately: each is monotonic in its coordinate (rounding is),
// so the anchors passing one form a contiguous range of anchors sorted by it.
template <class T>
ALWA_HD_INLINE bool right_of_left(const CandidateRegion<T>& r, T x) { return x - r.x1 > T(kInsideEps); }
template <class T>
ALWA_HD_INLINE bool left_of_right(const CandidateRegion<T>& r, T x) { return r.x2 - x > T(kInsideEps); }
template <class T>
ALWA_HD_INLINE bool below_top(const CandidateRegion<T>& r, T y) { return y - r.y1 > T(kInsideEps); }
template <class T>
ALWA_HD_INLINE bool above_bottom(const CandidateRegion<T>& r, T y) { return r.y2 - y > T(kInsideEps); }

template <class T>
ALWA_HD_INLINE bool inside(const CandidateRegion<T>& r, T x, T y) {
  return right_of_left(r, x) && below_top(r, y) && left_of_right(r, x) && above_bottom(r, y);
}

template <class T>
struct PairMetric {
  T metric, overlap;
};

// Step 2 for a candidate: its score at the gt's label and the two boxes (xyxy). NaN in either
// gives NaN (clamping keeps it, as torch's clamp does).
template <class T>
ALWA_HD_INLINE PairMetric<T> pair_metric(T score, const T* gt, const T* pred, const TalParams<T>& params) {
  const T g[4] = {gt[0], gt[1], gt[2], gt[3]};
  const T p[4] = {pred[0], pred[1], pred[2], pred[3]};
  T overlap = iou_value<LossKind::CIoU>(g, p, BoxFormat::XYXY, T(kOverlapEps));
  overlap = overlap < T(0) ? T(0) : overlap;
  const T metric = power(score, params.alpha, params.alpha_form) * power(overlap, params.beta, params.beta_form);
  return PairMetric<T>{metric, overlap};
}

// The ranking of steps 3 and 5: whether (metric m1 of anchor a1) ranks above (m2 of a2).
template <class T>
ALWA_HD_INLINE bool ranks_above(T m1, int64_t a1, T m2, int64_t a2) {
  const bool nan1 = m1 != m1, nan2 = m2 != m2;
  if (nan1 || nan2) return nan1 && (!nan2 || a1 < a2);
  return m1 > m2 || (m1 == m2 && a1 < a2);
}

// Whether a metric ranks above the metric 0 of every non-candidate (then it is taken before any
// of them): larger than 0, or NaN.
template <class T>
ALWA_HD_INLINE bool ranks_above_zero(T m) {
  return m > T(0) || m != m;
}

// Step 6: the target score of a positive of metric m whose gt's positives have the largest
// overlap max_overlap and the largest metric max_metric, in ultralytics' order of operations.
// Every other gt contributes 0 to ultralytics' maximum over gts, so with more than one gt a
// negative value (only reachable through negative scores) becomes 0.
template <class T>
ALWA_HD_INLINE T target_score(T m, T max_overlap, T max_metric, T eps, bool several_gts) {
  const T value = m * max_overlap / (max_metric + eps);
  return several_gts && value < T(0) ? T(0) : value;
}

// The larger of two values, NaN winning (torch's amax propagates NaN).
template <class T>
ALWA_HD_INLINE T nan_max(T a, T b) {
  return (a != a || a > b) ? a : b;
}

// Whether a label of a valid gt is a class index (a device-side assert or an error otherwise).
ALWA_HD_INLINE bool tal_label_valid(int64_t label, int64_t num_classes) {
  return label >= 0 && label < num_classes;
}

// Everything the kernels read and write, decided on the host; every tensor contiguous.
// score_t: the scores' storage type; T: the boxes' type (float or double), in which everything
// is computed; the target scores are written in T.
template <class score_t, class T>
struct TalArgs {
  const score_t* scores;  // (B, A, C)
  const T* pred;          // (B, A, 4)
  const T* anchors;       // (A, 2)
  const int64_t* labels;  // (B, n), truncated as ultralytics' .long()
  const T* gt;            // (B, n, 4)
  const bool* valid;      // (B, n)
  int64_t batch, num_anchors, num_classes, num_gt;
  TalParams<T> params;
  // Outputs.
  int64_t* target_labels;  // (B, A)
  T* target_boxes;         // (B, A, 4)
  T* target_scores;        // (B, A, C)
  bool* fg_mask;           // (B, A)
  int64_t* target_gt_idx;  // (B, A)
};

template <class score_t, class T>
ALWA_HD_INLINE const T* gt_box(const TalArgs<score_t, T>& args, int64_t b, int64_t j) {
  return args.gt + (b * args.num_gt + j) * 4;
}
template <class score_t, class T>
ALWA_HD_INLINE const T* pred_box(const TalArgs<score_t, T>& args, int64_t b, int64_t a) {
  return args.pred + (b * args.num_anchors + a) * 4;
}

// The metric and overlap of (gt j, anchor a) of image b: step 2's for a candidate, zeros
// otherwise (as ultralytics' dense tensors hold them).
template <class score_t, class T>
ALWA_HD_INLINE PairMetric<T> gt_anchor_metric(const TalArgs<score_t, T>& args, int64_t b, int64_t j, int64_t a,
                                             const CandidateRegion<T>& region) {
  const T* anchor = args.anchors + a * 2;
  if (!inside(region, anchor[0], anchor[1])) return PairMetric<T>{T(0), T(0)};
  const int64_t label = args.labels[b * args.num_gt + j];
  T score = static_cast<T>(args.scores[(b * args.num_anchors + a) * args.num_classes + label]);
  if (args.params.logits) score = T(1) / (T(1) + math::exp_(-score));
  return pair_metric(score, gt_box(args, b, j), pred_box(args, b, a), args.params);
}

// Step 4 for an anchor positive for several gts: the gt of the largest overlap (NaN first, then
// the lowest index among equals; gts that do not hold the anchor, or are not valid, at 0).
template <class score_t, class T>
ALWA_HD_INLINE int64_t largest_overlap_gt(const TalArgs<score_t, T>& args, int64_t b, int64_t a) {
  int64_t best = 0;
  T best_overlap = T(0);
  for (int64_t j = 0; j < args.num_gt; ++j) {
    if (!args.valid[b * args.num_gt + j]) continue;
    const CandidateRegion<T> region = candidate_region(gt_box(args, b, j), args.params.min_side);
    const T o = gt_anchor_metric(args, b, j, a, region).overlap;
    if (o != o) return j;
    if (o > best_overlap) {
      best = j;
      best_overlap = o;
    }
  }
  return best;
}

// Writes anchor a's targets (step 6); gt < 0: background (ultralytics' gt index 0, its label
// and box, score 0). `score` is the target score of a positive.
template <class score_t, class T>
ALWA_HD_INLINE void write_anchor_targets(const TalArgs<score_t, T>& args, int64_t b, int64_t a, int64_t gt, T score) {
  const int64_t i = b * args.num_anchors + a;
  const bool fg = gt >= 0;
  const int64_t j = fg ? gt : 0;
  args.fg_mask[i] = fg;
  args.target_gt_idx[i] = j;
  T* scores = args.target_scores + i * args.num_classes;
  for (int64_t c = 0; c < args.num_classes; ++c) scores[c] = T(0);
  T* box = args.target_boxes + i * 4;
  if (args.num_gt == 0) {
    args.target_labels[i] = args.num_classes;
    for (int k = 0; k < 4; ++k) box[k] = T(0);
    return;
  }
  int64_t label = args.labels[b * args.num_gt + j];
  label = label < 0 ? 0 : label;
  args.target_labels[i] = label;
  const T* g = gt_box(args, b, j);
  for (int k = 0; k < 4; ++k) box[k] = g[k];
  // (A valid gt's label is a class index, checked; an anchor can reach an invalid gt 0 only
  // through step 4's ties at overlap 0, with score 0, and its label is not trusted.)
  if (fg && label < args.num_classes) scores[label] = score;
}

}  // namespace alwa
