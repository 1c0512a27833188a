"""The two UIs as a person sees them: headless Chromium on a real MLflow server and Prefect server.

One small sweep (the ``sweepflow`` command, in its own process) runs against ``mlflow server``
and ``prefect server start``, both on 127.0.0.1 with their stores in a temporary folder. The
pages are React/Vue apps, so every check waits for text in the page, never for a fixed time.
Screenshots go to ``test-output/browser/`` (ignored by git).

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/install-browser`` installs them);
skips with the reason when they are missing. Selenium drives them; no browser is downloaded.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers import BIN, REPO, free_port, missing_service, start, stop, wait_for_http
from tracking import tags

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOTS = REPO / "test-output" / "browser"
EXPERIMENT = "browser-check"
MODEL = "browser-check-model"
TRIALS = 3
#: Longest wait for a page to show what it should (a cold SPA on a busy 2-core machine).
PAGE_TIMEOUT = 90


@dataclass(frozen=True)
class Stack:
    """The two servers and what the sweep left in them."""

    mlflow_url: str
    prefect_url: str
    experiment_id: str
    parent_run_id: str
    parent_run_name: str
    trial_run_ids: dict[str, str]
    trial_metrics: dict[str, dict[str, float]]
    flow_run_id: str
    summary_artifact_id: str


def _require_browser() -> None:
    pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[dev]')")
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not path.exists():
            missing_service(f"{path} is missing: run .ci/install-browser (Debian {package})")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Start both servers (at once: each takes ~10-40 s), run one sweep against them, stop them."""
    _require_browser()
    root = tmp_path_factory.mktemp("browser")
    mlflow_port, prefect_port = free_port(), free_port()
    mlflow_url = f"http://127.0.0.1:{mlflow_port}"
    prefect_url = f"http://127.0.0.1:{prefect_port}"
    env = {
        **os.environ,
        "PREFECT_HOME": str(root / "prefect"),
        "PREFECT_API_URL": f"{prefect_url}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }
    mlflow = start(
        [
            str(BIN / "mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(mlflow_port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            str(root / "mlflow-artifacts"),
        ],
        # The server's job queue (GenAI judges, periodic tasks) starts ~7 worker processes that
        # a tracking and registry check never uses; on 2 cores they slow everything down.
        env=env | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        log=root / "mlflow-server.log",
    )
    prefect = start(
        [
            str(BIN / "prefect"),
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(prefect_port),
        ],
        env=env,
        log=root / "prefect-server.log",
    )
    try:
        wait_for_http(f"{mlflow_url}/health", timeout=120, process=mlflow)
        wait_for_http(f"{prefect_url}/api/health", timeout=120, process=prefect)
        yield _run_sweep(root, env | {"MLFLOW_TRACKING_URI": mlflow_url}, mlflow_url, prefect_url)
    finally:
        stop(prefect)
        stop(mlflow)


def _run_sweep(root: Path, env: dict[str, str], mlflow_url: str, prefect_url: str) -> Stack:
    """The quick start's command, pointed at the two servers, then what it logged."""
    from mlflow import MlflowClient

    command = [sys.executable, "-m", "cli", "sweep", "--rows", "600", "--folds", "2"]
    command += ["--trials", str(TRIALS), "--pruner", "none", "--experiment", EXPERIMENT]
    command += ["--model-name", MODEL]
    done = subprocess.run(
        command,
        env=env | {"SWEEPFLOW_MLRUNS": str(root / "mlruns")},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    client = MlflowClient(tracking_uri=mlflow_url)
    experiment_id = client.get_experiment_by_name(EXPERIMENT).experiment_id
    found = client.search_runs([experiment_id])
    parent = next(r for r in found if r.data.tags.get(tags.TAG_KIND) == "sweep")
    trials = {r.info.run_name: r for r in found if r.data.tags.get(tags.TAG_KIND) == "trial"}
    assert sorted(trials) == [f"trial-{n:03d}" for n in range(TRIALS)]
    return Stack(
        mlflow_url=mlflow_url,
        prefect_url=prefect_url,
        experiment_id=experiment_id,
        parent_run_id=parent.info.run_id,
        parent_run_name=parent.info.run_name,
        trial_run_ids={name: r.info.run_id for name, r in trials.items()},
        trial_metrics={name: dict(r.data.metrics) for name, r in trials.items()},
        flow_run_id=parent.data.tags[tags.TAG_FLOW_RUN],
        summary_artifact_id=_artifact_id(
            prefect_url, parent.data.tags[tags.TAG_FLOW_RUN], "sweep-summary"
        ),
    )


def _artifact_id(prefect_url: str, flow_run_id: str, key: str) -> str:
    """The id of a flow run's artifact, asked of the Prefect server's REST API."""
    query = {"artifacts": {"key": {"any_": [key]}, "flow_run_id": {"any_": [flow_run_id]}}}
    request = urllib.request.Request(
        f"{prefect_url}/api/artifacts/filter",
        data=json.dumps(query).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        (artifact,) = json.load(response)
    return artifact["id"]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Headless Debian Chromium through its ChromeDriver, with a fresh profile."""
    _require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        # No network here but loopback: without these Chromium keeps dialling Google's hosts.
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--window-size=1600,1000",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def page_text(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.TAG_NAME, "body").text


def wait_until(driver, check: Callable[[], bool], what: str, timeout: float = PAGE_TIMEOUT):
    """Wait for ``check``; on time-out, save the page as it is and say what never appeared."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        WebDriverWait(driver, timeout, poll_frequency=0.5).until(lambda _: check())
    except TimeoutException:
        name = "".join(c if c.isalnum() else "-" for c in what)[:60]
        driver.save_screenshot(str(SCREENSHOTS / f"timeout-{name}.png"))
        raise AssertionError(
            f"{what} not shown within {timeout} s; page text:\n{page_text(driver)[:2000]}"
        ) from None


def wait_for_text(driver, *texts: str) -> str:
    """Wait until every one of ``texts`` is in the page; returns the page text."""
    wait_until(driver, lambda: all(t in page_text(driver) for t in texts), f"text {texts!r}")
    return page_text(driver)


def image_loaded(driver, element) -> int:
    """The image's width in pixels once it has loaded, else 0."""
    script = "return arguments[0].complete ? arguments[0].naturalWidth : 0"
    return int(driver.execute_script(script, element) or 0)


#: Scrolls every scrolled box of the page to its end (the page itself need not be the one).
SCROLL_DOWN = """
for (const box of document.querySelectorAll('*')) {
  if (box.scrollHeight > box.clientHeight + 10) box.scrollTop = box.scrollHeight;
}
"""


def scrolled_text(driver) -> str:
    """The page text after scrolling down (Prefect draws lists as they come into view)."""
    driver.execute_script(SCROLL_DOWN)
    return page_text(driver)


# --------------------------------------------------------------------------- MLflow UI


def test_mlflow_runs_table_nests_the_trials_under_the_sweep_run(stack, browser):
    from selenium.webdriver.common.by import By

    browser.get(
        f"{stack.mlflow_url}/#/experiments/{stack.experiment_id}/runs?workflowType=machine_learning"
    )
    wait_for_text(browser, stack.parent_run_name, f"{TRIALS + 1} matching runs")
    # Children are folded under their parent: the expander sits in the parent's name cell.
    row = browser.find_element(
        By.XPATH, f"//*[text()='{stack.parent_run_name}']/ancestor::*[@role='row'][1]"
    )
    row.find_element(By.XPATH, ".//button[contains(@data-component-id, 'runnamecell')]").click()
    wait_for_text(browser, *stack.trial_run_ids)
    browser.save_screenshot(str(SCREENSHOTS / "mlflow-runs-nested.png"))


def test_mlflow_trial_run_shows_its_metrics_params_and_parent(stack, browser):
    from selenium.webdriver.common.by import By

    name = "trial-001"
    browser.get(
        f"{stack.mlflow_url}/#/experiments/{stack.experiment_id}/runs/"
        f"{stack.trial_run_ids[name]}?workflowType=machine_learning"
    )
    metrics = stack.trial_metrics[name]
    text = wait_for_text(browser, name, "cv_auc_mean", "fold_auc", "Parent run")
    assert str(metrics["cv_auc_mean"]) in text
    assert stack.parent_run_name in text
    for param in ("n_estimators", "max_depth", "min_samples_leaf"):
        assert param in text
    metric = browser.find_element(By.XPATH, "//*[normalize-space(text())='cv_auc_mean']")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", metric)
    browser.save_screenshot(str(SCREENSHOTS / "mlflow-trial-run.png"))


def test_mlflow_sweep_run_shows_its_results_and_plots(stack, browser):
    from selenium.webdriver.common.by import By

    run_page = f"{stack.mlflow_url}/#/experiments/{stack.experiment_id}/runs/{stack.parent_run_id}"
    browser.get(f"{run_page}?workflowType=machine_learning")
    wait_for_text(browser, stack.parent_run_name, "best_cv_auc", "holdout_roc_auc")
    browser.get(f"{run_page}/artifactPath/model/roc_curve.png?workflowType=machine_learning")
    wait_for_text(browser, "calibration_curve.png", "feature_importances.png", "optuna")

    def roc_image_shown() -> bool:
        # The viewer shows the PNG from a blob URL; the plot is the one large picture.
        images = browser.find_elements(By.TAG_NAME, "img")
        return any(image_loaded(browser, image) > 300 for image in images)

    wait_until(browser, roc_image_shown, "the ROC curve image")
    browser.save_screenshot(str(SCREENSHOTS / "mlflow-sweep-run-roc-curve.png"))


def test_mlflow_registered_model_shows_its_aliases(stack, browser):
    browser.get(f"{stack.mlflow_url}/#/models/{MODEL}?workflowType=machine_learning")
    text = wait_for_text(browser, MODEL, "Version 1", "champion", "challenger")
    assert stack.parent_run_id in text  # the sweep_run_id tag of the version
    browser.save_screenshot(str(SCREENSHOTS / "mlflow-registered-model.png"))


def test_mlflow_model_version_page_shows_the_model_card(stack, browser):
    browser.get(f"{stack.mlflow_url}/#/models/{MODEL}/versions/1?workflowType=machine_learning")
    wait_for_text(browser, "model card", "Intended use", "skops sha256")
    browser.save_screenshot(str(SCREENSHOTS / "mlflow-model-card.png"))


# --------------------------------------------------------------------------- Prefect UI


def test_prefect_flow_run_page_shows_the_run_and_its_artifacts(stack, browser):
    from selenium.webdriver.common.by import By

    browser.get(f"{stack.prefect_url}/runs/flow-run/{stack.flow_run_id}")
    wait_for_text(browser, f"sweep-{EXPERIMENT}", "Completed", f"trial-{TRIALS - 1:03d}")
    # The run's graph marks each task's artifacts: the run at a glance.
    browser.save_screenshot(str(SCREENSHOTS / "prefect-flow-run.png"))
    browser.find_element(By.CSS_SELECTOR, "li.p-tab#artifacts").click()
    keys = ("sweep-progress", "sweep-summary", "sweep-leaderboard", "mlflow-sweep-run")
    wait_until(
        browser,
        lambda: all(key in scrolled_text(browser) for key in (*keys, "mlflow-model-version")),
        f"artifacts {keys}",
    )
    assert f"{TRIALS}/{TRIALS} trials done" in page_text(browser)
    browser.save_screenshot(str(SCREENSHOTS / "prefect-flow-run-artifacts.png"))


def test_prefect_summary_embeds_the_plots_served_by_mlflow(stack, browser):
    from selenium.webdriver.common.by import By

    browser.get(f"{stack.prefect_url}/artifacts/artifact/{stack.summary_artifact_id}")
    wait_for_text(browser, "Best trial", "Holdout", "Plots", "open in MLflow")

    def plots_shown() -> bool:
        images = browser.find_elements(By.XPATH, f"//img[starts-with(@src, '{stack.mlflow_url}')]")
        return len(images) >= 2 and all(image_loaded(browser, image) > 0 for image in images)

    wait_until(browser, plots_shown, "the plots embedded from the MLflow server")
    first = browser.find_element(By.XPATH, f"//img[starts-with(@src, '{stack.mlflow_url}')]")
    browser.execute_script("arguments[0].scrollIntoView()", first)
    browser.save_screenshot(str(SCREENSHOTS / "prefect-sweep-summary-plots.png"))
