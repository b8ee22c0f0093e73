"""Screenshots of a dashboard in headless Chromium, for docs/img/.

python experiments/dashboard/screenshots.py DASH_FOLDER OUT_PREFIX FEATURE [FEATURE ...]
"""

import shutil
import subprocess
import sys
from pathlib import Path


def screenshot(page: Path, feature: int, png: Path, size: str = "1400,1300") -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("headless Chromium is not installed (Debian: chromium)")
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--window-size={size}",
            "--virtual-time-budget=8000",
            f"--screenshot={png}",
            f"{page.resolve().as_uri()}#f{feature}",
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )


if __name__ == "__main__":
    folder, prefix, *features = sys.argv[1:]
    for f in features:
        png = Path(f"{prefix}_{f}.png")
        screenshot(Path(folder) / "index.html", int(f), png)
        print(png)
