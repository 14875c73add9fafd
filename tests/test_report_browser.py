"""The report in a real browser: headless Chromium opens the page of a tiny run at 1280 pixels
and fails on a broken image, a missing section, any console error or a horizontal scrollbar;
it saves screenshots in the test's folder.

Without Chromium the tests are skipped, except under CI=true, where they fail (CI installs it).

Chromium is driven through the Chrome DevTools Protocol over ``--remote-debugging-pipe`` (no
websocket, no package): it reads the protocol's JSON messages, each ended by a NUL byte, on its
file descriptor 3 and writes its own on descriptor 4.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from biaslab.report import ExplainFigure, ExplainTable, build_report, examples_figure
from tests.conftest import copy_repo, sh

# ------------------------------------------------------------------ a tiny DevTools client

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def find_chromium() -> str | None:
    """The first Chromium (or Chrome) on PATH, or None."""
    return next((path for name in NAMES if (path := shutil.which(name))), None)


class Browser:
    """One headless Chromium with one page; use as a context manager."""

    def __init__(self, executable: str, profile: Path, timeout: float = 30.0):
        self.timeout = timeout
        self.events: list[dict] = []
        self._id = 0
        self._buffer = b""
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def wire():  # in the child, before exec: the pipes at descriptors 3 and 4
            # copies first: either end may sit at 3 or 4 already
            reader, writer = os.dup(to_child_r), os.dup(from_child_w)
            os.dup2(reader, 3)
            os.dup2(writer, 4)

        self.process = subprocess.Popen(
            [executable, "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--disable-extensions", "--no-first-run",
             "--hide-scrollbars", "--mute-audio", f"--user-data-dir={profile}",
             "--remote-debugging-pipe", "about:blank"],
            preexec_fn=wire, pass_fds=(3, 4),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        os.close(to_child_r)
        os.close(from_child_w)
        self.session = None

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.send("Browser.close", session=False)
            except (OSError, TimeoutError, RuntimeError):
                pass
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for fd in (self._to_child, self._from_child):
            try:
                os.close(fd)
            except OSError:
                pass

    # ------------------------------------------------------------------ protocol

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer from Chromium")
            ready, _, _ = select.select([self._from_child], [], [], left)
            if ready:
                chunk = os.read(self._from_child, 1 << 20)
                if not chunk:
                    err = self.process.stderr.read().decode(errors="replace")[-2000:]
                    raise RuntimeError(f"Chromium closed the pipe:\n{err}")
                self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def send(self, method: str, params: dict | None = None, session: bool = True) -> dict:
        """Call ``method``; returns its result (events arriving meanwhile are kept)."""
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self._to_child, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, event: str) -> dict:
        """The first ``event`` (kept, or the next to arrive)."""
        deadline = time.monotonic() + self.timeout
        for seen in self.events:
            if seen.get("method") == event:
                return seen
        while True:
            message = self._read_message(deadline)
            self.events.append(message)
            if message.get("method") == event:
                return message

    # ------------------------------------------------------------------ the page

    def open(self, url: str, width: int = 1280, height: int = 900) -> None:
        """Load ``url`` in a ``width`` x ``height`` window; returns once it has loaded."""
        target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)
        attached = self.send("Target.attachToTarget",
                             {"targetId": target["targetId"], "flatten": True}, session=False)
        self.session = attached["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable")
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        self.send("Page.navigate", {"url": url})
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str):
        """The value of a JavaScript expression (JSON-serialisable) in the page."""
        result = self.send("Runtime.evaluate", {"expression": expression,
                                                "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:60]}...: {result['exceptionDetails']}")
        return result["result"].get("value")

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and error log entries (failed loads) so far."""
        out = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                out.append("console: " + " ".join(str(a.get("value", a.get("description")))
                                                  for a in params.get("args", [])))
            elif method == "Runtime.exceptionThrown":
                out.append("exception: " + json.dumps(params.get("exceptionDetails"))[:500])
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                entry = params["entry"]
                out.append(f"log: {entry.get('text')} {entry.get('url', '')}")
        return out

    def screenshot(self, path: Path, full_page: bool = False) -> Path:
        """A PNG of the window (or of the whole page)."""
        params: dict = {"format": "png"}
        if full_page:
            size = self.evaluate("[document.documentElement.scrollWidth,"
                                 " document.documentElement.scrollHeight]")
            params |= {"captureBeyondViewport": True,
                       "clip": {"x": 0, "y": 0, "width": size[0], "height": size[1],
                                "scale": 1}}
        data = self.send("Page.captureScreenshot", params)["data"]
        path.write_bytes(base64.b64decode(data))
        return path


# ------------------------------------------------------------------ the tests

WIDTH = 1280
SECTIONS = ["verdict", "figures", "tradeoff", "per-group", "training", "audit", "examples",
            "sweep"]
# what the page looks like to a reader: broken images, its sections, whether it is wider than
# the window (and, to say what overflows, the widest elements not inside a scrolling box)
PROBE = """JSON.stringify({
  images: document.images.length,
  broken: [...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.alt),
  sections: [...document.querySelectorAll("section[id]")].map(s => s.id),
  scrollWidth: document.documentElement.scrollWidth,
  clientWidth: document.documentElement.clientWidth,
  overflowing: [...document.body.querySelectorAll("*")]
    .filter(e => !e.closest(".scroll") && e.getBoundingClientRect().right
                 > document.documentElement.clientWidth + 1)
    .slice(0, 5).map(e => e.tagName + "." + e.className + ": " + e.textContent.slice(0, 40)),
})"""

pytestmark = pytest.mark.slow  # a browser, and for the first test a whole tiny pipeline


@pytest.fixture(scope="module")
def chromium() -> str:
    path = find_chromium()
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("Chromium is not installed, and CI must run the browser test: install "
                        "it (apt-get install chromium)")
        pytest.skip("Chromium is not installed (apt-get install chromium); CI runs this test")
    return path


def look(chromium: str, page, folder, name: str) -> dict:
    """Open ``page`` at WIDTH pixels, check it, save ``NAME.png`` (the window) and
    ``NAME-full.png`` (the whole page) in ``folder``; returns the probe's findings."""
    with Browser(chromium, folder / f"{name}-profile") as browser:
        browser.open(page.resolve().as_uri(), width=WIDTH, height=900)
        seen = json.loads(browser.evaluate(PROBE))
        browser.screenshot(folder / f"{name}.png")
        browser.screenshot(folder / f"{name}-full.png", full_page=True)
        pdf = browser.send("Page.printToPDF", {"printBackground": True})["data"]
        seen["errors"] = browser.errors()
    seen["pdf"] = len(pdf)
    assert seen["errors"] == [], seen["errors"]
    assert seen["images"] > 0 and seen["broken"] == [], seen
    assert seen["scrollWidth"] <= seen["clientWidth"], (
        f"the page is {seen['scrollWidth']} px wide in a {seen['clientWidth']} px window: "
        f"{seen['overflowing']}")
    assert seen["pdf"] > 1000  # it prints
    return seen


def test_the_report_of_a_tiny_run_in_chromium(built_repo, chromium, tmp_path):
    # a copy: the stage writes bytecode into the repo, which other tests copy meanwhile
    repo = copy_repo(built_repo[0], tmp_path / "repo")
    explain = tmp_path / "explain"
    explain.mkdir()
    (explain / "occlusion.png").write_bytes(examples_figure(np.zeros((2, 8, 8)), ["a", "b"]))
    pd.DataFrame({"group": ["s=0", "s=1"], "attribution_share": [0.05, 0.61]}).to_csv(
        explain / "share.csv", index=False)
    (explain / "manifest.json").write_text(json.dumps({"items": [
        {"kind": "figure", "title": "Occlusion", "caption": "where it looks",
         "file": "occlusion.png"},
        {"kind": "table", "title": "Attribution on the bias", "file": "share.csv"}]}))
    page, verdict = tmp_path / "report" / "index.html", tmp_path / "verdict.json"
    sh(repo, "python", "-m", "stages.report", "--grid", "metrics/grid.csv",
       "--groups", "metrics/groups.csv", "--curves", "metrics/train",
       "--audit", "metrics/audit.json", "--audit-tables", "metrics/audit",
       "--pixels", "data/prepared/pixels.npy", "--index", "data/prepared/index.parquet",
       "--bias", "data/bias.parquet", "--predictions", "data/predictions",
       "--decisions", "data/decisions", "--explain", str(explain), "--verdict", str(verdict),
       "--out", str(page))
    seen = look(chromium, page, tmp_path, "report")
    assert seen["sections"] == [*SECTIONS[:4], "explain", *SECTIONS[4:]]
    # the tiny run: trade-off, ROC, calibration, confusion, explain, curves, examples
    assert seen["images"] == 7
    summary = json.loads(verdict.read_text())
    assert summary["verdict"] in ("passed", "failed", "not enough data")
    assert set(summary) == {"pair", "verdict", "s.excess_disparate_impact",
                            "s.equal_opportunity_difference", "flip_rate"}


def test_a_wide_run_without_bias_fits_the_window(chromium, tmp_path):
    """40 (scheme, method) columns, long group names, no injected bias, an explain section."""
    schemes, methods = [f"scheme_{i}" for i in range(8)], [f"method_{j}" for j in range(5)]
    attribute = "a_very_long_attribute_name_without_any_break"
    grid = pd.DataFrame([{"scheme": s, "method": m, "balanced_accuracy": 0.8,
                          "balanced_accuracy_lo": 0.7, "balanced_accuracy_hi": 0.9,
                          f"{attribute}.disparate_impact": 0.9, "recommended": s == "scheme_0"
                          and m == "method_0", f"{attribute}.groups": "x"}
                         for s in schemes for m in methods])
    per_group = pd.DataFrame({"scheme": "scheme_0", "method": "method_0", "set": "test",
                              "attribute": attribute, "group": [f"{attribute}={'x' * 80}"],
                              "n": 5, "patients": 5, "positives": 2, "negatives": 3})
    page = tmp_path / "wide.html"
    page.write_text(build_report(
        grid=grid, per_group=per_group, groups=[attribute], bias="none",
        audit={"n": 5, "prevalence": 0.4, "splits": {"test": 5}, "warnings": ["w" * 300]},
        prevalence=pd.DataFrame({"split": ["all"], "attribute": [attribute],
                                 "group": ["y" * 200], "n": [5], "prevalence": [0.4]}),
        gap=f"{attribute}.disparate_impact",
        explain=[ExplainFigure("Map", examples_figure(np.ones((1, 4, 4)), ["m"])),
                 ExplainTable("Share", pd.DataFrame({"z" * 150: [1.0]}))]))
    seen = look(chromium, page, tmp_path, "wide")
    assert "explain" in seen["sections"]
