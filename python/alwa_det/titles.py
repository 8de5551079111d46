"""How the detectors, loss kinds and weightings read in tables and figures (the paper's names),
in every table the harness and the study write."""
from __future__ import annotations

from alwa_ext.kinds import ALWA_MODES, LOSS_TITLES

from .config import DETECTORS

__all__ = ["LOSS_TITLES", "WEIGHTING_TITLES", "DETECTOR_TITLES", "weighting_title"]

# ALWA's modes are alwa1, alwa2, ... (alwa_ext.kinds.ALWA_MODES): ALWA_1, ALWA_2, ...
WEIGHTING_TITLES = {"fixed": "Fixed", **{mode: f"ALWA_{mode[len('alwa'):]}" for mode in ALWA_MODES}}

_DETECTOR_NAMES = {"retinanet": "RetinaNet", "faster_rcnn": "Faster R-CNN"}
DETECTOR_TITLES = {detector: _DETECTOR_NAMES[detector] for detector in DETECTORS}


def weighting_title(config) -> str:
    """How a run's weighting reads in a table: 'Fixed 1:1', 'ALWA_2 (paper rule, C = 50)', ..."""
    if config.weighting == "fixed":
        return f"{WEIGHTING_TITLES['fixed']} {config.cls_weight:g}:{config.reg_weight:g}"
    statistic = ", detrended" if config.alwa_statistic == "detrended" else ""
    return f"{WEIGHTING_TITLES[config.weighting]} ({config.alwa_update} rule{statistic}, C = {config.interval})"
