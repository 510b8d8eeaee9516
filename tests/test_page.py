"""The bias-derivative page in a real browser (Debian's chromium, driven by Playwright),
against a real gunicorn: it shows the service's exact numbers and talks to nobody else."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import requests

from tests.conftest import ROOT

playwright = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
ARTIFACTS = ROOT / "test-artifacts"
TERMS = [
    "z",
    "a",
    "loss",
    "dL_da",
    "da_dz",
    "dz_db",
    "dL_dz",
    "dL_db",
    "numerical_dL_db",
    "dL_dw",
    "b_next",
    "w_next",
]


@pytest.fixture(scope="module")
def browser():
    assert shutil.which(CHROMIUM), "chromium is not installed: run `make system-deps`"
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_server):
    """A fresh page on the live service; afterwards, no request may have left the service."""
    context = browser.new_context(viewport={"width": 1200, "height": 1600})
    page = context.new_page()
    requested, errors = [], []
    page.on("request", lambda request: requested.append(request.url))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(live_server + "/")
    page.wait_for_selector('[data-testid="dL_db"]:not(:empty)')
    page.wait_for_selector('[data-testid="db-0"]')
    yield page
    context.close()
    assert requested and all(url.startswith(live_server + "/") for url in requested), requested
    assert errors == []


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def shown(page, testid: str) -> str:
    return page.locator(f'[data-testid="{testid}"]').inner_text()


def neuron_body(page) -> dict:
    return page.evaluate("neuronRequest()")


def assert_terms_match_the_api(page, live_server):
    answer = requests.post(f"{live_server}/v1/neuron", json=neuron_body(page), timeout=10).json()
    for term in TERMS:
        expected = answer[term] if isinstance(answer[term], list) else [answer[term]]
        assert [float(v) for v in shown(page, term).split(",")] == expected, term


def test_the_calculator_shows_the_services_exact_numbers(page, live_server):
    assert_terms_match_the_api(page, live_server)
    # sigmoid with bce: dL/db is a - y, and the numerical derivative agrees
    assert float(shown(page, "dL_db")) == pytest.approx(float(shown(page, "a")) - 1.0, rel=1e-12)
    assert float(shown(page, "numerical_dL_db")) == pytest.approx(
        float(shown(page, "dL_db")), rel=1e-6
    )
    screenshot(page, "calculator-desktop")


def test_typing_updates_the_numbers_and_redraws_the_charts(page, live_server):
    bars, curve = page.inner_html("#bars"), page.inner_html("#curve")
    before = shown(page, "dL_db")
    page.fill("#b", "-1.25")
    page.wait_for_function(
        f"document.querySelector('[data-testid=dL_db]').textContent !== '{before}'"
    )
    page.select_option("#activation", "tanh")
    page.select_option("#loss", "half_mse")
    page.fill("#x", "1.5, -0.5")
    page.fill("#w", "0.8, 0.3")
    page.wait_for_function(
        "document.querySelector('[data-testid=dL_dw]').textContent.includes(',')"
    )
    page.wait_for_timeout(400)  # the last keystroke's answer
    assert_terms_match_the_api(page, live_server)
    assert page.inner_html("#bars") != bars and page.inner_html("#curve") != curve
    screenshot(page, "calculator-edited")


def test_descent_steps_follow_the_chosen_k(page):
    page.fill("#steps", "3")
    page.wait_for_function("document.querySelectorAll('#curve circle').length === 4")
    page.fill("#steps", "12")
    page.wait_for_function("document.querySelectorAll('#curve circle').length === 13")


@pytest.mark.parametrize(
    ("action", "field"),
    [
        (lambda page: page.fill("#x", ""), "x"),
        (lambda page: page.fill("#b", "abc"), "b"),
        (lambda page: page.select_option("#activation", "tanh"), "loss"),  # bce needs sigmoid
    ],
    ids=["empty-x", "letters-in-b", "bce-with-tanh"],
)
def test_bad_input_shows_the_services_own_message_next_to_the_field(
    page, live_server, action, field
):
    action(page)
    error = page.locator(f'[data-testid="err-{field}"]')
    error.wait_for(state="visible")
    problem = requests.post(f"{live_server}/v1/neuron", json=neuron_body(page), timeout=10).json()
    assert error.inner_text() == " ".join(problem["errors"][field])
    screenshot(page, f"error-{field}")


def read_matrix(page, prefix: str, rows: int, cols: int) -> list[list[float]]:
    return [[float(shown(page, f"{prefix}-{i}-{j}")) for j in range(cols)] for i in range(rows)]


def test_the_batch_views_db_is_the_column_sums_of_dz(page, live_server):
    dz = read_matrix(page, "dz", 3, 2)
    db = [float(shown(page, f"db-{j}")) for j in range(2)]
    assert db == pytest.approx([sum(row[j] for row in dz) for j in range(2)], rel=1e-12)
    assert "np.sum(dz, axis=0)" in shown(page, "sum-line")
    page.fill('[data-testid="X-1-0"]', "3.5")
    page.wait_for_function(
        f"document.querySelector('[data-testid=\"db-0\"]').textContent !== '{shown(page, 'db-0')}'"
    )
    answer = requests.post(
        f"{live_server}/v1/gradients",
        json={
            "inputs": [[0.5, -1.0], [3.5, 2.0], [-0.3, 0.8]],
            "targets": [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]],
            "layers": [
                {
                    "weights": [[0.1, -0.2], [0.4, 0.5]],
                    "biases": [0.0, 0.1],
                    "activation": "sigmoid",
                }
            ],
            "loss": "half_mse",
            "include": ["dz"],
        },
        timeout=10,
    ).json()
    assert read_matrix(page, "dz", 3, 2) == answer["layers"][0]["dz"]
    assert [float(shown(page, f"db-{j}")) for j in range(2)] == answer["layers"][0]["db"]
    screenshot(page, "batch-flat-bias")


def test_the_bias_shape_toggle_shows_what_the_service_returns_for_each(page, live_server):
    page.check('input[value="row"]')
    page.wait_for_function(
        "document.querySelector('[data-testid=\"sum-line\"]').textContent.includes('keepdims=True')"
    )
    assert "shape (1, 2)" in shown(page, "batch-answer")
    screenshot(page, "batch-row-bias")

    page.check('input[value="column"]')
    error = page.locator('[data-testid="err-batch"]')
    error.wait_for(state="visible")
    body = page.evaluate(
        """() => ({inputs: readGrid("X"), targets: readGrid("Y"), loss: "half_mse",
                   include: ["dz"], layers: [{weights: readGrid("W"),
                   biases: biasAs("column", readGrid("b")[0]), activation: "sigmoid"}]})"""
    )
    problem = requests.post(f"{live_server}/v1/gradients", json=body, timeout=10).json()
    message = problem["errors"]["layers.0.biases"][0]
    assert error.inner_text() == f"layers.0.biases: {message}"
    assert "(2, 1)" in message and "Fix:" in message
    screenshot(page, "batch-column-bias-error")


def test_a_phone_sized_screen_needs_no_sideways_scrolling(browser, live_server):
    context = browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True)
    page = context.new_page()
    page.goto(live_server + "/")
    page.wait_for_selector('[data-testid="db-0"]')
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    screenshot(page, "phone")
    context.close()
    assert overflow <= 0


def test_every_input_has_a_label_and_is_reachable_by_keyboard(page):
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input, select')].filter((el) =>
              !el.getAttribute('aria-label') && !el.closest('label')
              && !(el.id && document.querySelector(`label[for="${el.id}"]`)))
              .map((el) => el.outerHTML)"""
    )
    assert unlabelled == []
    page.focus("#x")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "w"
    before = shown(page, "w_next")
    page.keyboard.type("5")  # tabbing into a field selects it: w is now 5
    page.wait_for_function(
        f"document.querySelector('[data-testid=w_next]').textContent !== '{before}'"
    )
    assert page.input_value("#w") == "5"
