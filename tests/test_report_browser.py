"""The report page in a real headless browser: it renders to a non-blank screenshot, and no image is broken.

Needs ``chromium`` (``apt-get install chromium``; ``.ci/run`` installs it when missing) and
skips with the reason where there is none. The page is built from the planted run of
``tests/test_report.py``.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pytest
from PIL import Image

from genesel.report import build_report
from tests.test_report import write_fake_run

#: Names the browser goes by, first found wins.
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
#: Flags for a quiet, offline, throw-away headless browser.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
WINDOW = (1200, 3000)
IMG_SRC = re.compile(r"<img\b[^>]*?\bsrc\s*=\s*([\"'])(.*?)\1", re.IGNORECASE | re.DOTALL)
#: Marks every image on the page after load: how many there are and how many did not decode.
IMAGE_PROBE = """<script>window.addEventListener('load', function () {
  var images = Array.prototype.slice.call(document.images);
  var broken = images.filter(function (i) { return !i.complete || i.naturalWidth === 0; });
  document.body.setAttribute('data-images', String(images.length));
  document.body.setAttribute('data-broken', String(broken.length));
});</script>"""


def find_browser() -> str | None:
    """Path of a Chromium-like browser on ``PATH``, or ``None``."""
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def run_browser(browser: str, profile: Path, *args: str, timeout: float = 120.0) -> str:
    """Run the headless browser with a fresh profile; its stdout. The whole process group is ended on timeout."""
    command = [browser, *FLAGS, f"--user-data-dir={profile}", *args]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise AssertionError(f"{' '.join(command)} did not finish in {timeout:.0f} s") from None
    assert process.returncode == 0, f"{' '.join(command)} exited with {process.returncode}"
    return out


def broken_images(page: Path) -> tuple[int, list[str]]:
    """Count the ``<img>`` of ``page`` and list those whose ``src`` is no decodable image.

    A ``data:`` URI must carry base64 image data; any other ``src`` must name an existing
    file (relative to the page, or a ``file://`` URL). Both must open with Pillow.
    """
    sources = [src for _, src in IMG_SRC.findall(page.read_text())]
    broken = []
    for src in sources:
        try:
            if src.startswith("data:"):
                header, _, payload = src.partition(",")
                if not header.startswith("data:image/") or ";base64" not in header:
                    raise ValueError("not a base64 image data URI")
                data = base64.b64decode(payload, validate=True)
            else:
                url = urlparse(src)
                if url.scheme not in ("", "file"):
                    raise ValueError(f"points outside the page ({url.scheme})")
                path = Path(unquote(url.path))
                data = (path if path.is_absolute() else page.parent / path).read_bytes()
            with Image.open(io.BytesIO(data)) as image:
                image.verify()
        except (OSError, ValueError, binascii.Error) as error:
            broken.append(f"{src[:60]}: {error}")
    return len(sources), broken


def images_in_browser(browser: str, page: Path, profile: Path) -> tuple[int, int]:
    """Load a copy of ``page`` with :data:`IMAGE_PROBE` in the browser: (images, broken images)."""
    probe = page.with_name(f"{page.stem}.probe.html")
    html = page.read_text()
    probe.write_text(
        html.replace("</body>", IMAGE_PROBE + "</body>")
        if "</body>" in html
        else html + IMAGE_PROBE
    )
    dom = run_browser(
        browser, profile, "--virtual-time-budget=5000", "--dump-dom", probe.resolve().as_uri()
    )
    body = re.search(r'<body[^>]*\bdata-images="(\d+)"[^>]*\bdata-broken="(\d+)"', dom)
    assert body, f"the probe did not run; the DOM begins {dom[:300]!r}"
    return int(body.group(1)), int(body.group(2))


@pytest.fixture(scope="module")
def browser() -> str:
    path = find_browser()
    if path is None:
        pytest.skip(
            f"no headless browser ({', '.join(BROWSERS)}) on PATH; install one with `apt-get install chromium`"
        )
    return path


@pytest.fixture(scope="module")
def report_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_report(write_fake_run(tmp_path_factory.mktemp("browser") / "run")).index


def test_report_screenshot_is_not_blank(browser: str, report_page: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    run_browser(
        browser,
        tmp_path / "profile",
        f"--screenshot={shot}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        report_page.as_uri(),
    )
    assert shot.exists() and shot.stat().st_size > 10_000, "no screenshot"
    with Image.open(shot) as image:
        assert image.size == WINDOW
        grey = np.asarray(image.convert("L"), dtype=np.float64)
    background = np.median(grey)
    inked = np.mean(np.abs(grey - background) > 32)
    assert grey.std() > 10 and inked > 0.02, (
        f"the page looks blank (std {grey.std():.1f}, {inked:.1%} of pixels inked)"
    )
    top = grey[: WINDOW[1] // 6]  # the title and the answer are on top
    assert np.mean(np.abs(top - background) > 32) > 0.01, "nothing drawn at the top of the page"


def test_report_has_no_broken_image(browser: str, report_page: Path, tmp_path: Path) -> None:
    n_images, broken = broken_images(report_page)
    assert n_images >= 3 and not broken, broken  # curves, training, runtime
    assert images_in_browser(browser, report_page, tmp_path / "profile") == (n_images, 0)


def test_a_broken_image_is_caught(browser: str, report_page: Path, tmp_path: Path) -> None:
    html = report_page.read_text()
    page = tmp_path / "index.html"
    first = IMG_SRC.search(html)
    assert first, "the report has no image"
    page.write_text(
        html[: first.start(2)]
        + "data:image/png;base64,AAAA"
        + html[first.end(2) :]
        + '<img src="missing.png">'
    )
    n_images, broken = broken_images(page)
    assert len(broken) == 2 and n_images >= 4
    assert images_in_browser(browser, page, tmp_path / "profile") == (n_images, 2)
