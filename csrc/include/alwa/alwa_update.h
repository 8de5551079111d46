// ALWA (adaptive loss weight adjustment): recording the losses and the every-C update of the
// classification weight, written once for the CPU and CUDA kernels.
//
// The rule, as in the paper's published training code: each iteration the weighted losses
// λcls·Lcls and λreg·Lreg are recorded; once a window holds C values, each window's mean and
// sample standard deviation (ddof = 1) give a statistic per task (ALWA_1: mean + std,
// ALWA_2: std); if cls > reg then λcls = 1 - (cls - reg) / cls, an absolute assignment
// (= reg / cls); λreg never changes; both windows are emptied.
// The "stable" update records the unweighted losses instead, so the statistics do not
// already contain the λcls they are used to set. The "detrended" statistic takes the spread
// about the window's least-squares line over the recorded iterations t = 0, 1, ... instead of
// about its mean (the residual std, ddof = 2): over a window of a loss that is still falling,
// the plain std is mostly the fall, not the noise.
//
// A window is kept in double, whatever the loss dtype, as shifted sums: count, the shift K
// (its first recorded value), Σ(x - K), Σ(x - K)² and Σ(x - K)·t. Subtracting a value of the
// window keeps the variance accurate when the losses have a large mean and a small spread
// (Σx² - n·mean² would cancel every digit), and a window can be resumed exactly from these
// five numbers (Σt and Σt² follow from the count). Windows of several ranks merge exactly with
// Chan et al.'s pairwise formulas, with the mean difference taken from the shifts, which is
// how the distributed path pools them.
//
// Torch-free on purpose: compiles with nvcc or a host compiler alone.
#pragma once

#include <math.h>
#include <stdint.h>

#include "common/macros.h"

namespace alwa {

// The rule's choices, each a table that yields its enum and names (alwa_update_checks.cpp
// parses them; alwa_ext.kinds reads the names through alwa_ext._C).
// mode: "alwa1" compares mean + spread, "alwa2" the spread alone.
#define ALWA_MODES(X) X(Alwa1, "alwa1") X(Alwa2, "alwa2")
// update: "paper" records the weighted losses, "stable" the unweighted ones.
#define ALWA_UPDATES(X) X(Paper, "paper") X(Stable, "stable")
// statistic: the spread is the window's std ("raw", the paper's) or its std about the window's
// least-squares line ("detrended").
#define ALWA_STATISTICS(X) X(Raw, "raw") X(Detrended, "detrended")

#define ALWA_ENUMERATOR(e, name) e,
#define ALWA_NAME(e, name) name,
enum class AlwaMode : int { ALWA_MODES(ALWA_ENUMERATOR) };
enum class AlwaUpdate : int { ALWA_UPDATES(ALWA_ENUMERATOR) };
enum class AlwaStatistic : int { ALWA_STATISTICS(ALWA_ENUMERATOR) };
constexpr const char* kAlwaModeNames[] = {ALWA_MODES(ALWA_NAME)};
constexpr const char* kAlwaUpdateNames[] = {ALWA_UPDATES(ALWA_NAME)};
constexpr const char* kAlwaStatisticNames[] = {ALWA_STATISTICS(ALWA_NAME)};
#undef ALWA_ENUMERATOR
#undef ALWA_NAME

// How a closed window turns into a statistic per task.
struct AlwaRule {
  AlwaMode mode;
  AlwaStatistic statistic;
};

// Layout of the `window` tensor: kWindowRows rows (classification, regression) of
// kWindowFields doubles each.
constexpr int kWindowCls = 0;
constexpr int kWindowReg = 1;
constexpr int kWindowRows = 2;
constexpr int kWindowFields = 5;
constexpr int kFieldCount = 0;
constexpr int kFieldShift = 1;
constexpr int kFieldSum = 2;      // Σ(x - shift)
constexpr int kFieldSumSq = 3;    // Σ(x - shift)²
constexpr int kFieldSumTime = 4;  // Σ(x - shift)·t, t = 0, 1, ... the value's place in the window

// Layout of the `weights` tensor.
constexpr int kWeightCls = 0;
constexpr int kWeightReg = 1;

// Records one value in a window row.
ALWA_HD_INLINE void add_value(double* row, double x) {
  if (row[kFieldCount] == 0.0) row[kFieldShift] = x;
  const double deviation = x - row[kFieldShift];
  const double time = row[kFieldCount];
  row[kFieldCount] += 1.0;
  row[kFieldSum] += deviation;
  row[kFieldSumSq] += deviation * deviation;
  row[kFieldSumTime] += deviation * time;
}

// Moments of a window: the mean is shift + mean_offset, m2 = Σ(x - mean)²; of the times t,
// their mean and Σ(t - mean_t)²; cross = Σ(x - mean)(t - mean_t).
struct Moments {
  double count;
  double shift;
  double mean_offset;
  double m2;
  double time_mean;
  double time_m2;
  double cross;
};

ALWA_HD_INLINE Moments window_moments(const double* row) {
  const double count = row[kFieldCount];
  if (count == 0.0) return Moments{0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
  const double mean_offset = row[kFieldSum] / count;
  const double m2 = row[kFieldSumSq] - row[kFieldSum] * mean_offset;
  // t = 0 .. count - 1: mean (count - 1) / 2, Σ(t - mean)² = count (count² - 1) / 12.
  const double time_mean = 0.5 * (count - 1.0);
  const double time_m2 = count * (count * count - 1.0) / 12.0;
  const double cross = row[kFieldSumTime] - row[kFieldSum] * time_mean;
  return Moments{count, row[kFieldShift], mean_offset, m2 > 0.0 ? m2 : 0.0,
                 time_mean, time_m2, cross};
}

// Moments of the concatenation of two windows (Chan, Golub & LeVeque, with the co-moment of
// values and times alike), kept on a's shift. The difference of the means is taken as
// (shift_b - shift_a) + (offset_b - offset_a), of small numbers, not as a difference of two
// large means. Empty windows are neutral, so merging rank by rank needs no special case.
// Ranks record the same iterations, so their times coincide (delta_time = 0) and the pooled
// trend is the common one.
ALWA_HD_INLINE Moments merge_moments(Moments a, Moments b) {
  if (b.count == 0.0) return a;
  if (a.count == 0.0) return b;
  const double count = a.count + b.count;
  const double weight = a.count * b.count / count;
  const double delta = (b.shift - a.shift) + (b.mean_offset - a.mean_offset);
  const double delta_time = b.time_mean - a.time_mean;
  return Moments{count,
                 a.shift,
                 a.mean_offset + delta * (b.count / count),
                 a.m2 + b.m2 + delta * delta * weight,
                 a.time_mean + delta_time * (b.count / count),
                 a.time_m2 + b.time_m2 + delta_time * delta_time * weight,
                 a.cross + b.cross + delta * delta_time * weight};
}

// Values a window needs for its spread: 2 for the std (ddof 1), 3 about a line (ddof 2).
ALWA_HD_INLINE double min_window_count(AlwaStatistic statistic) {
  return statistic == AlwaStatistic::Detrended ? 3.0 : 2.0;
}

// The statistic the rule compares: the spread (sample std, or the residual std about the
// least-squares line), plus the mean for ALWA_1. Needs min_window_count values.
ALWA_HD_INLINE double window_statistic(Moments m, AlwaRule rule) {
  double spread;
  if (rule.statistic == AlwaStatistic::Detrended) {
    double residual = m.time_m2 > 0.0 ? m.m2 - m.cross * m.cross / m.time_m2 : m.m2;
    residual = residual > 0.0 ? residual : 0.0;
    spread = sqrt(residual / (m.count - 2.0));
  } else {
    spread = sqrt(m.m2 / (m.count - 1.0));
  }
  return rule.mode == AlwaMode::Alwa1 ? (m.shift + m.mean_offset) + spread : spread;
}

// What closing a window does to λcls.
struct WindowOutcome {
  double cls_weight;
  // The window gave no usable weight and λcls was left as it was: too few recorded values
  // for the spread (a window of iterations skipped as non-finite), or a rule result that is not a
  // finite number > 0. The latter is a regression statistic of 0 -- e.g. a window of images
  // without objects, whose regression loss is 0 throughout -- for which the published rule
  // sets λcls = reg / cls = 0; the weighted classification losses are then 0 too, and λcls
  // never recovers. Departing from the published code here is what keeps training the
  // classifier.
  bool held;
};

// The paper's rule at the end of a window: λcls is reassigned (not scaled) to
// 1 - (cls - reg) / cls = reg / cls when the classification statistic is the larger one.
ALWA_HD_INLINE WindowOutcome close_window(double current, Moments cls, Moments reg,
                                          AlwaRule rule) {
  const double needed = min_window_count(rule.statistic);
  if (cls.count < needed || reg.count < needed) return WindowOutcome{current, true};
  const double cls_stat = window_statistic(cls, rule), reg_stat = window_statistic(reg, rule);
  if (!(cls_stat > reg_stat)) return WindowOutcome{current, false};  // does not fire
  const double candidate = 1.0 - (cls_stat - reg_stat) / cls_stat;
  if (!(isfinite(candidate) && candidate > 0.0)) return WindowOutcome{current, true};
  return WindowOutcome{candidate, false};
}

ALWA_HD_INLINE void clear_window(double* window) {
  for (int i = 0; i < kWindowRows * kWindowFields; ++i) window[i] = 0.0;
}

// The state a step reads and writes, all on one device.
struct AlwaState {
  double* weights;       // [λcls, λreg]
  double* window;        // kWindowRows x kWindowFields
  int64_t* step;         // calls so far (recorded or skipped)
  int64_t* skipped;      // calls whose losses were not finite
  int64_t* num_updates;  // windows closed so far
  int64_t* held;         // of which left λcls unchanged for want of a usable statistic
};

// Applies a closed window's outcome to the state and empties the window.
ALWA_HD_INLINE void finish_window(WindowOutcome outcome, double* weights, double* window,
                                  int64_t* num_updates, int64_t* held) {
  weights[kWeightCls] = outcome.cls_weight;
  *num_updates += 1;
  if (outcome.held) *held += 1;
  clear_window(window);
}

// One training iteration: writes the weights in force into applied[0..1] (they weight this
// iteration's returned losses), records the losses unless one is not finite, and when the
// window has `interval` values closes it: new λcls, windows emptied. interval == 0 records
// only; the caller then closes windows itself (the distributed path, which pools first).
ALWA_HD_INLINE void record_and_update(double loss_cls, double loss_reg, AlwaState state,
                                      int64_t interval, AlwaRule rule, AlwaUpdate update,
                                      double* applied) {
  const double cls_weight = state.weights[kWeightCls];
  const double reg_weight = state.weights[kWeightReg];
  applied[kWeightCls] = cls_weight;
  applied[kWeightReg] = reg_weight;
  *state.step += 1;

  const bool weighted = update == AlwaUpdate::Paper;
  const double cls_value = weighted ? cls_weight * loss_cls : loss_cls;
  const double reg_value = weighted ? reg_weight * loss_reg : loss_reg;
  // The raw losses are checked too: 0 * inf is NaN, but a huge weight can also overflow a
  // finite loss; either way the iteration says nothing about the balance of the tasks.
  if (!(isfinite(loss_cls) && isfinite(loss_reg) && isfinite(cls_value) && isfinite(reg_value))) {
    *state.skipped += 1;
    return;
  }
  double* cls_row = state.window + kWindowCls * kWindowFields;
  double* reg_row = state.window + kWindowReg * kWindowFields;
  add_value(cls_row, cls_value);
  add_value(reg_row, reg_value);
  if (interval > 0 && cls_row[kFieldCount] >= static_cast<double>(interval)) {
    finish_window(close_window(cls_weight, window_moments(cls_row), window_moments(reg_row), rule),
                  state.weights, state.window, state.num_updates, state.held);
  }
}

// Closes the window from the windows of `num_ranks` ranks (rank-major, each kWindowRows x
// kWindowFields), merged in rank order so every rank computes bitwise the same weights.
ALWA_HD_INLINE void update_from_pooled_windows(const double* rank_windows, int64_t num_ranks,
                                               double* weights, double* window,
                                               int64_t* num_updates, int64_t* held,
                                               AlwaRule rule) {
  Moments cls{0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
  Moments reg{0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
  for (int64_t rank = 0; rank < num_ranks; ++rank) {
    const double* window = rank_windows + rank * kWindowRows * kWindowFields;
    cls = merge_moments(cls, window_moments(window + kWindowCls * kWindowFields));
    reg = merge_moments(reg, window_moments(window + kWindowReg * kWindowFields));
  }
  finish_window(close_window(weights[kWeightCls], cls, reg, rule), weights, window, num_updates,
                held);
}

}  // namespace alwa
