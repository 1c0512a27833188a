"""Plots of the model and the study: pure functions returning figures (no MLflow, no Prefect)."""

from __future__ import annotations

import io

import numpy as np
import optuna
import pandas as pd
import pytest
from matplotlib.figure import Figure

from churnml import plots
from churnml.config import SearchSpace
from churnml.data import validate_frame
from churnml.model import build_pipeline, fit_quietly, selected_feature_names
from churnml.search import suggest_params
from churnml.synthetic import generate_bank_churn

PARAMS = {
    "k": 6,
    "n_estimators": 15,
    "max_depth": 5,
    "min_samples_split": 2,
    "min_samples_leaf": 2,
    "max_features": "sqrt",
    "class_weight": None,
    "criterion": "gini",
    "max_samples": None,
}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_bytes(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=60)
    return buffer.getvalue()


def texts(figure: Figure) -> str:
    """Every title, axis label, tick label and legend entry drawn on the figure."""
    found = []
    for axes in figure.get_axes():
        found += [axes.get_title(), axes.get_xlabel(), axes.get_ylabel()]
        found += [label.get_text() for label in axes.get_yticklabels() + axes.get_xticklabels()]
        legend = axes.get_legend()
        if legend is not None:
            found += [text.get_text() for text in legend.get_texts()]
        found += [text.get_text() for text in axes.texts]
    return "\n".join(found)


@pytest.fixture(scope="module")
def fitted():
    frame = validate_frame(generate_bank_churn(600, seed=5), source="test", cv_folds=3)
    features, target = frame.drop(columns="Exited"), frame["Exited"]
    model = fit_quietly(build_pipeline(PARAMS, seed=0), features.iloc[:450], target.iloc[:450])
    return model, features.iloc[450:], target.iloc[450:]


def make_study(n_trials: int, *, constant: bool = False, seed: int = 0) -> optuna.Study:
    """A study over the real search space with a cheap made-up objective."""
    space = SearchSpace(
        k_max=1 if constant else None,
        n_estimators={"low": 10, "high": 10 if constant else 200},
        max_depth={"low": 3, "high": 3 if constant else 20},
        allow_unlimited_depth=not constant,
        min_samples_split={"low": 2, "high": 2 if constant else 20},
        min_samples_leaf={"low": 1, "high": 1 if constant else 20},
        max_features=["sqrt"] if constant else ["sqrt", 0.5],
        class_weight=[None] if constant else [None, "balanced"],
        criterion=["gini"] if constant else ["gini", "entropy"],
        max_samples=[None] if constant else [None, 0.5],
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.RandomSampler(seed=seed)
    )

    def objective(trial: optuna.Trial) -> float:
        params = suggest_params(trial, space, n_features=13)
        return 0.7 + 0.01 * params["k"] + 0.001 * params["n_estimators"] / 10

    study.optimize(objective, n_trials=n_trials)
    return study


def test_model_figures_render_every_plot_as_png(fitted):
    model, features, target = fitted
    figures = plots.model_figures(model, features, target)
    assert list(figures) == list(plots.MODEL_PLOTS)
    for name, figure in figures.items():
        assert isinstance(figure, Figure)
        assert png_bytes(figure).startswith(PNG_MAGIC), name
        assert plots.MODEL_PLOTS[name] in texts(figure)


def test_feature_importances_use_the_real_column_names(fitted):
    model, features, target = fitted
    figure = plots.model_figures(model, features, target)["feature_importances"]
    labels = {label.get_text() for label in figure.get_axes()[0].get_yticklabels()}
    assert labels == set(selected_feature_names(model))
    assert any(name in labels for name in ("Age", "NumOfProducts", "Balance", "IsActiveMember"))


def test_roc_and_confusion_matrix_show_their_numbers():
    target = np.array([0, 0, 1, 1, 0, 1])
    probabilities = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9])
    roc = texts(plots.roc_curve_figure(target, probabilities))
    assert "AUC 0.889" in roc
    matrix = texts(plots.confusion_matrix_figure(target, probabilities))
    # [tn fp; fn tp] at 0.5 is [3 0; 1 2]
    for cell in ("3\n(100.0%)", "0\n(0.0%)", "1\n(33.3%)", "2\n(66.7%)"):
        assert cell in matrix


def test_curves_refuse_a_single_class():
    with pytest.raises(ValueError, match="both classes"):
        plots.roc_curve_figure(np.zeros(5), np.linspace(0, 1, 5))
    with pytest.raises(ValueError, match="both classes"):
        plots.calibration_figure(pd.Series([1, 1, 1]), np.array([0.2, 0.5, 0.9]))


def test_curves_refuse_mismatched_lengths():
    with pytest.raises(ValueError, match="expected 4 probabilities"):
        plots.precision_recall_figure(np.array([0, 1, 0, 1]), np.array([0.1, 0.9]))
    with pytest.raises(ValueError, match="threshold"):
        plots.confusion_matrix_figure(np.array([0, 1]), np.array([0.1, 0.9]), threshold=1.5)
    with pytest.raises(ValueError, match="no feature importances"):
        plots.feature_importance_figure({})


def test_study_figures_draw_all_four_interactive_and_static():
    study = make_study(8)
    drawn = plots.study_figures(study, seed=1)
    assert drawn.skipped == {}
    assert list(drawn.plots) == list(plots.STUDY_PLOTS)
    for name, plot in drawn.plots.items():
        assert plot.interactive.to_plotly_json()["data"], name
        assert png_bytes(plot.static).startswith(PNG_MAGIC), name
    page = plots.study_html(drawn, title="study s")
    # plotly.js is embedded once, so the page works offline and in MLflow's artifact viewer.
    assert page.count("plotly.js v") == 1
    for title in plots.STUDY_PLOTS.values():
        assert title in page


def test_study_plots_leave_pyplot_empty():
    from matplotlib import pyplot

    plots.study_figures(make_study(4))
    assert pyplot.get_fignums() == []


def test_too_few_trials_skip_importances_with_a_reason():
    study = make_study(plots.MIN_TRIALS_FOR_IMPORTANCES - 1)
    drawn = plots.study_figures(study)
    assert "param_importances" not in drawn.plots
    assert "at least 3 completed trials" in drawn.skipped["param_importances"]
    assert "optimization_history" in drawn.plots
    assert plots.study_plot(study, "param_importances") is None
    assert "Not drawn: fANOVA needs" in plots.study_html(drawn, title="t")


def test_a_study_without_completed_trials_draws_nothing():
    study = optuna.create_study(direction="maximize")
    study.tell(study.ask(), state=optuna.trial.TrialState.PRUNED)
    drawn = plots.study_figures(study)
    assert drawn.plots == {}
    assert set(drawn.skipped.values()) == {"no trial completed"}


def test_constant_parameters_are_left_out():
    study = make_study(4, constant=True)
    assert plots.varied_params(study) == []
    drawn = plots.study_figures(study)
    assert list(drawn.plots) == ["optimization_history"]
    assert "no parameter took more than one value" in drawn.skipped["slice"]


def test_unknown_study_plot_is_refused():
    with pytest.raises(ValueError, match="unknown study plot 'contour'"):
        plots.study_plot_problem(make_study(1), "contour")


# --------------------------------------------------------------------------- logged to MLflow


@pytest.fixture
def parent_run(request):
    """A sweep parent run in the temporary store, and the trials' shared context."""
    from flows.sweep.trial_steps import TrialContext
    from tracking import runs
    from tracking.store import connect, ensure_experiment, resolve_target

    target = resolve_target()
    client = connect(target)
    experiment_id = ensure_experiment(client, f"plots-{request.node.name}", target)
    run_id = runs.start_sweep_run(client, experiment_id, run_name="sweep-p", params={}, tags={})
    context = TrialContext(
        data_key="unused",
        target=target,
        experiment_id=experiment_id,
        parent_run_id=run_id,
        study_name="s",
        cv_folds=3,
        seed=0,
    )
    return client, context


def prepared_from(features: pd.DataFrame, target: pd.Series):
    from churnml.prepare import PreparedData

    test = features.assign(Exited=target.to_numpy())
    return PreparedData(
        train=test,
        test=test,
        target="Exited",
        encoded_features=[],
        digest="d",
        source="test",
        path=None,
        rows=len(test),
        churn_rate=float(target.mean()),
        feature_columns=list(features.columns),
    )


def test_log_plots_puts_model_and_study_plots_on_the_parent_run(fitted, parent_run):
    from flows.sweep import plot_steps

    client, context = parent_run
    model, features, target = fitted
    report = plot_steps.log_plots(model, make_study(6), prepared_from(features, target), context)
    run_id = context.parent_run_id
    model_files = {a.path for a in client.list_artifacts(run_id, "model")}
    assert model_files == {f"model/{name}.png" for name in plots.MODEL_PLOTS}
    optuna_files = {a.path for a in client.list_artifacts(run_id, "optuna")}
    assert optuna_files == {"optuna/study.html"} | {
        f"optuna/{name}.png" for name in plots.STUDY_PLOTS
    }
    assert {link.artifact_path for link in report.links} == model_files | optuna_files
    assert report.skipped == {}
    roc = report.link("model/roc_curve.png")
    assert roc.title == plots.MODEL_PLOTS["roc_curve"]
    assert roc.page_url.endswith(
        f"/runs/{run_id}/artifactPath/model/roc_curve.png?workflowType=machine_learning"
    )
    assert f"run_uuid={run_id}" in roc.image_url
    assert report.link("optuna/study.html").image_url is None


def test_log_plots_reports_what_it_skipped(fitted, parent_run):
    from flows.sweep import plot_steps

    _, context = parent_run
    model, features, target = fitted
    one_class = target.where(target == 0, 0)
    report = plot_steps.log_plots(model, make_study(2), prepared_from(features, one_class), context)
    assert "both classes" in report.skipped["roc_curve"]
    assert "fANOVA" in report.skipped["param_importances"]
    assert {link.artifact_path for link in report.links} >= {
        "optuna/study.html",
        "optuna/optimization_history.png",
    }


# --------------------------------------------------------------------------- drawn apart


def test_the_study_drawn_apart_gives_the_files_drawn_here(tmp_path):
    """The drawing process (churnml.plots.apart) writes what this process would: the same
    page and plots, the same pixels, the same reasons for what it skipped; its folder goes
    with it."""
    from churnml.plots.apart import StudyDrawer, write_study_plots

    for trials in (6, 2):  # with 2 trials, fANOVA's importances are skipped
        study = make_study(trials)
        here = tmp_path / f"here-{trials}"
        here.mkdir()
        drawn_here = plots.study_figures(study, seed=1)
        files = write_study_plots(drawn_here, here, title="the study")
        drawer = StudyDrawer.start()
        try:
            drawer.submit(study, seed=1, title="the study")
            apart = drawer.result(timeout=120)
            assert apart.files == files
            assert apart.skipped == drawn_here.skipped
            for name in files[1:]:
                assert (apart.folder / name).read_bytes() == (here / name).read_bytes(), name
            assert "<title>the study</title>" in (apart.folder / files[0]).read_text()
        finally:
            drawer.close()
        assert not apart.folder.exists()


def test_a_drawer_that_died_leaves_the_study_plots_to_this_process(fitted, parent_run):
    """Gone before it was handed the study, or killed while drawing: the plots are drawn and
    logged here all the same."""
    from churnml.plots.apart import StudyDrawer
    from flows.sweep import plot_steps

    client, context = parent_run
    model, features, target = fitted
    study = make_study(6)
    expected = {"optuna/study.html"} | {f"optuna/{name}.png" for name in plots.STUDY_PLOTS}

    gone = plot_steps.DrawerSlot()
    gone.drawer = StudyDrawer.start()
    gone.drawer._process.kill()
    gone.drawer._process.wait()
    assert plot_steps.hand_over_study(gone, study, context) is None
    gone.close()

    slot = plot_steps.DrawerSlot()
    try:
        killed = plot_steps.hand_over_study(slot, study, context)  # started here if not yet
        assert killed is slot.drawer is not None
        killed._process.kill()
        data = prepared_from(features, target)
        report = plot_steps.log_plots(model, study, data, context, killed)
    finally:
        slot.close()
    logged = {a.path for a in client.list_artifacts(context.parent_run_id, "optuna")}
    assert logged == expected
    assert {link.artifact_path for link in report.links} >= expected


def test_a_drawing_process_that_left_no_result_is_a_drawing_error():
    """Its result file gone or unreadable: an error the sweep falls back from, not a crash."""
    from churnml.plots.apart import DrawingError, StudyDrawer

    drawer = StudyDrawer.start()
    try:
        drawer.submit(make_study(3), seed=0, title="t")
        drawer._process.wait(timeout=120)
        (drawer.folder / "result.json").write_text("{not json")
        with pytest.raises(DrawingError, match="left no result"):
            drawer.result()
    finally:
        drawer.close()


def test_a_drawing_process_when_the_trials_leave_a_core_free_once_one_ended(monkeypatch):
    """None when the trials take every core; otherwise started as the first trial ends (the
    flow's start is over), and not left running after the sweep."""
    from churnml.config import SweepConfig
    from flows import runtime
    from flows.sweep import plot_steps

    monkeypatch.setattr("os.cpu_count", lambda: 2)
    with plot_steps.study_drawer(SweepConfig(parallel=2)) as slot:
        assert slot is None
    with plot_steps.study_drawer(SweepConfig(parallel=1, task_runner="dask")) as slot:
        assert slot is None
    with plot_steps.study_drawer(SweepConfig(parallel=1)) as slot:
        assert slot is not None
        runtime.report_progress(runtime.TrialProgress("s", 0, 4, None))
        assert slot.drawer is None
        runtime.report_progress(runtime.TrialProgress("s", 1, 4, 0.8))
        assert slot.drawer is not None
        process = slot.drawer._process
    assert process.poll() is not None  # not left running


def test_summary_markdown_embeds_key_plots_and_links_the_rest():
    from flows.sweep.report import plots_markdown
    from tracking.plots import PlotReport, plot_links
    from tracking.store import TrackingTarget

    target = TrackingTarget("http://127.0.0.1:5111", "http://127.0.0.1:5111", None)
    paths = ["model/roc_curve.png", "model/confusion_matrix.png", "optuna/study.html"]
    report = PlotReport(
        links=plot_links(target, "3", "abc", paths), skipped={"slice": "no trial completed"}
    )
    text = plots_markdown(report, "open http://127.0.0.1:5111")
    assert (
        "![ROC curve (holdout)](http://127.0.0.1:5111/get-artifact?"
        "path=model%2Froc_curve.png&run_uuid=abc)" in text
    )
    assert "![Confusion matrix" not in text  # linked, not inline
    assert (
        "[open in MLflow](http://127.0.0.1:5111/#/experiments/3/runs/abc/artifactPath/"
        "optuna/study.html?workflowType=machine_learning)" in text
    )
    assert "Not drawn: slice (no trial completed)" in text
    assert "No plot was logged." in plots_markdown(PlotReport(), "x")
