// The loss kinds and box formats of box_loss and box_iou, each in one table from which the
// enum, the names users pass, the titles and the per-kind traits all come. The parser
// (box_loss_plan.cpp) and alwa_ext.kinds (through alwa_ext._C, alwa.cpp) read these tables;
// nothing else spells a kind's name. Torch-free: compiles with nvcc or a host compiler alone.
//
// Adding a kind: a row here, its formula in iou_losses.h or coord_losses.h, its case in
// box_loss_element.h (csrc/README.md walks through it).
#pragma once

#include "common/macros.h"

namespace alwa {

// X(enumerator = title, name, one loss per box from the boxes' overlap, has a pairwise
//   similarity (box_iou) and an Alpha-IoU form). The kinds box_iou takes come first.
#define ALWA_LOSS_KINDS(X)               \
  X(IoU, "iou", true, true)              \
  X(GIoU, "giou", true, true)            \
  X(DIoU, "diou", true, true)            \
  X(CIoU, "ciou", true, true)            \
  X(EIoU, "eiou", true, false)           \
  X(SIoU, "siou", true, false)           \
  X(L1, "l1", false, false)              \
  X(SmoothL1, "smooth_l1", false, false)

enum class LossKind : int {
#define ALWA_ENUMERATOR(kind, name, iou_family, alpha_form) kind,
  ALWA_LOSS_KINDS(ALWA_ENUMERATOR)
#undef ALWA_ENUMERATOR
};

constexpr const char* kLossKindNames[] = {
#define ALWA_NAME(kind, name, iou_family, alpha_form) name,
    ALWA_LOSS_KINDS(ALWA_NAME)
#undef ALWA_NAME
};

constexpr const char* kLossKindTitles[] = {
#define ALWA_TITLE(kind, name, iou_family, alpha_form) #kind,
    ALWA_LOSS_KINDS(ALWA_TITLE)
#undef ALWA_TITLE
};

// A kind's traits, from its row.
struct LossKindTraits {
  bool iou_family;  // one loss per box, computed from the boxes' overlap (else per coordinate)
  bool alpha_form;  // a pairwise similarity (box_iou) and an Alpha-IoU form (box_loss's alpha)
};
ALWA_HOST_DEVICE constexpr LossKindTraits loss_kind_traits(LossKind kind) {
  switch (kind) {
#define ALWA_TRAITS(k, name, iou_family, alpha_form) \
  case LossKind::k:                                  \
    return LossKindTraits{iou_family, alpha_form};
    ALWA_LOSS_KINDS(ALWA_TRAITS)
#undef ALWA_TRAITS
  }
  return LossKindTraits{false, false};
}
ALWA_HOST_DEVICE constexpr bool is_iou_family(LossKind kind) {
  return loss_kind_traits(kind).iou_family;
}
ALWA_HOST_DEVICE constexpr bool has_alpha_form(LossKind kind) {
  return loss_kind_traits(kind).alpha_form;
}

// X(enumerator, name, box_iou takes it; those come first). Deltas: pred holds mmdet DeltaXYWHBBoxCoder deltas
// against per-box anchors (xyxy), target holds xyxy boxes; box_iou has no anchors.
#define ALWA_BOX_FORMATS(X)  \
  X(XYXY, "xyxy", true)      \
  X(CXCYWH, "cxcywh", true)  \
  X(Deltas, "deltas", false)

enum class BoxFormat : int {
#define ALWA_ENUMERATOR(format, name, pairwise) format,
  ALWA_BOX_FORMATS(ALWA_ENUMERATOR)
#undef ALWA_ENUMERATOR
};

constexpr const char* kBoxFormatNames[] = {
#define ALWA_NAME(format, name, pairwise) name,
    ALWA_BOX_FORMATS(ALWA_NAME)
#undef ALWA_NAME
};

ALWA_HOST_DEVICE constexpr bool is_pairwise_format(BoxFormat format) {
  switch (format) {
#define ALWA_TRAIT(f, name, pairwise) \
  case BoxFormat::f:                  \
    return pairwise;
    ALWA_BOX_FORMATS(ALWA_TRAIT)
#undef ALWA_TRAIT
  }
  return false;
}

// The kinds (and formats) box_iou takes are the first rows of their tables, so their names
// are a prefix of the names (box_loss_plan.cpp parses and lists them so).
constexpr int leading_rows(const bool* flags, int count) {
  int lead = 0;
  while (lead < count && flags[lead]) ++lead;
  for (int i = lead; i < count; ++i) {
    if (flags[i]) return -1;
  }
  return lead;
}
constexpr bool kAlphaForm[] = {
#define ALWA_FLAG(k, name, iou_family, alpha_form) alpha_form,
    ALWA_LOSS_KINDS(ALWA_FLAG)
#undef ALWA_FLAG
};
constexpr bool kPairwiseFormat[] = {
#define ALWA_FLAG(f, name, pairwise) pairwise,
    ALWA_BOX_FORMATS(ALWA_FLAG)
#undef ALWA_FLAG
};
constexpr int kNumPairwiseKinds = leading_rows(kAlphaForm, sizeof(kAlphaForm) / sizeof(bool));
constexpr int kNumPairwiseFormats =
    leading_rows(kPairwiseFormat, sizeof(kPairwiseFormat) / sizeof(bool));
static_assert(kNumPairwiseKinds > 0, "the kinds with a pairwise form must lead ALWA_LOSS_KINDS");
static_assert(kNumPairwiseFormats > 0, "the formats box_iou takes must lead ALWA_BOX_FORMATS");

}  // namespace alwa
