"""Pictures of a sweep: the best model's curves and the Optuna study's plots.

Pure functions that return figures; saving them anywhere is the caller's business
(``tracking/plots.py`` logs them to MLflow).

The model plots are in :mod:`churnml.plots.curves`, the study's in :mod:`churnml.plots.study`;
this package's names are the public ones.
"""

from churnml.plots.curves import (
    MODEL_PLOTS,
    calibration_figure,
    confusion_matrix_figure,
    feature_importance_figure,
    model_figure_drawers,
    model_figures,
    precision_recall_figure,
    roc_curve_figure,
)
from churnml.plots.study import (
    MIN_TRIALS_FOR_IMPORTANCES,
    OBJECTIVE_NAME,
    STUDY_PLOTS,
    StudyPlot,
    StudyPlots,
    study_figures,
    study_html,
    study_plot,
    study_plot_problem,
    varied_params,
)

__all__ = [
    "MIN_TRIALS_FOR_IMPORTANCES",
    "MODEL_PLOTS",
    "OBJECTIVE_NAME",
    "STUDY_PLOTS",
    "StudyPlot",
    "StudyPlots",
    "calibration_figure",
    "confusion_matrix_figure",
    "feature_importance_figure",
    "model_figure_drawers",
    "model_figures",
    "precision_recall_figure",
    "roc_curve_figure",
    "study_figures",
    "study_html",
    "study_plot",
    "study_plot_problem",
    "varied_params",
]
