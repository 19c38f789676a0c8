"""The site in a real browser: headless Chromium opens every page that build_site.py wrote.

For each page: the maths was typeset by the site's own MathJax (every TeX snippet became MathJax
output in its STIX web font, none is left as raw `$...$`, none is an error), every image loaded,
the page requested nothing outside the site and nothing failed to load, no script raised, and a
screenshot is not blank. Chromium is driven over the DevTools protocol on a pipe
(`--remote-debugging-pipe`: no port, no websocket package), with the network cut off by a proxy that
does not exist. Skipped where no Chromium is installed (`apt-get install chromium-headless-shell`;
`.ci/run` installs it as root and sets FOUNDATIONS_BROWSER, and then a missing browser fails).
"""
import base64
import fcntl
import io
import json
import os
import re
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
import build_site  # noqa: E402

pytestmark = pytest.mark.site

BROWSERS = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome")
WATCHDOG_S = 300


def find_browser():
    """The Chromium to use: FOUNDATIONS_BROWSER if set (then it must work), else one on PATH."""
    wanted = os.environ.get("FOUNDATIONS_BROWSER")
    if wanted:
        exe = shutil.which(wanted)
        assert exe, f"FOUNDATIONS_BROWSER={wanted!r} is set (as .ci/run does) but not executable"
        return exe
    for name in BROWSERS:
        exe = shutil.which(name)
        if exe:
            return exe
    pytest.skip("no Chromium on PATH (looked for " + ", ".join(BROWSERS) + "): install Debian's "
                "chromium-headless-shell (apt-get install chromium-headless-shell; "
                ".ci/run does as root)")


class Chromium:
    """Headless Chromium driven over the DevTools protocol: JSON messages ended by a NUL byte,
    written to the browser's fd 3 and read from its fd 4 (`--remote-debugging-pipe`)."""

    def __init__(self, exe, profile, timeout=60):
        to_chrome_r, self.to_chrome = os.pipe()
        self.from_chrome, from_chrome_w = os.pipe()
        self.timeout, self.buf, self.events, self.next_id = timeout, b"", [], 0

        def child_fds():  # in the child, before exec: the two pipe ends become fds 3 and 4
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_chrome_r, from_chrome_w)]
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        args = [exe, "--headless", "--remote-debugging-pipe", f"--user-data-dir={profile}",
                "--no-first-run", "--no-default-browser-check", "--disable-gpu",
                "--hide-scrollbars", "--mute-audio", "--disable-background-networking",
                "--disable-component-update", "--disable-extensions",
                # the network, cut off: a proxy nobody listens on, and no name resolves
                "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
                "--host-resolver-rules=MAP * ~NOTFOUND"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.append("--no-sandbox")  # Chromium refuses to run as root with its sandbox
        self.proc = subprocess.Popen(args + ["about:blank"], preexec_fn=child_fds, close_fds=False,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        os.close(to_chrome_r)
        os.close(from_chrome_w)

    def _read_message(self, deadline):
        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.from_chrome], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self.from_chrome, 1 << 20)
            if not chunk:
                raise RuntimeError(f"Chromium closed its pipe (exit code {self.proc.poll()})")
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def send(self, method, params=None, session=None, timeout=None):
        """Send a command and return its result; events that arrive meanwhile are kept."""
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.to_chrome, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method, timeout=None):
        """Wait for (and return) the first kept or new event called `method`."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            for i, ev in enumerate(self.events):
                if ev.get("method") == method:
                    return self.events.pop(i)
            self.events.append(self._read_message(deadline))

    def close(self):
        try:
            self.send("Browser.close", timeout=10)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self.to_chrome)
        os.close(self.from_chrome)


CHECK_JS = r"""(() => {
  const skip = 'code, pre, script, style, .MathJax, .MathJax_Display, .MathJax_Preview';
  const raw = [];
  for (const el of document.querySelectorAll('.jp-RenderedMarkdown, .site-page')) {
    let text = '';
    const walk = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
    for (let n = walk.nextNode(); n; n = walk.nextNode()) {
      if (!n.parentElement.closest(skip)) text += n.nodeValue;
    }
    const found = text.match(/\$\$[^$]+\$\$|\$[^$\s][^$]*\$|\\\(|\\\[/g);
    if (found) raw.push(...found.map(s => s.slice(0, 60)));
  }
  const hc = window.MathJax && MathJax.OutputJax && MathJax.OutputJax['HTML-CSS'];
  return {
    tex: document.querySelectorAll('script[type^="math/tex"]').length,
    typeset: document.querySelectorAll('span.MathJax[id$="-Frame"]').length,
    errors: document.querySelectorAll('.MathJax_Error, .noError, .merror').length,
    font: hc ? hc.fontInUse || null : null,
    raw: raw,
    images: [...document.images].map(i => ({src: i.currentSrc.slice(0, 40), done: i.complete,
                                            width: i.naturalWidth})),
    nav: [...document.querySelectorAll('nav.site-nav a')].map(a => a.getAttribute('href')),
    links: [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href')),
  };
})()"""

# MathJax posts 'End' once its first typesetting is done (a hook registered later runs at once).
# The hook must not return MathJax.Hub.Queue(...): 'End' is posted from that queue, which would
# then wait on itself.
TYPESET_JS = """new Promise(resolve => {
  if (!window.MathJax || !MathJax.Hub) { resolve('no MathJax'); return; }
  MathJax.Hub.Register.StartupHook('End', () => { resolve('typeset'); });
})"""


def not_blank(png):
    """True when a screenshot has content: more than 2% of its pixels differ from the commonest one,
    in more than 8 grey levels."""
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("L")
    hist = img.histogram()
    commonest = max(range(256), key=hist.__getitem__)
    others = sum(hist) - hist[commonest]
    return others > 0.02 * sum(hist) and sum(1 for h in hist if h) > 8


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The whole site, built from this project's notebooks into a temporary folder."""
    out = tmp_path_factory.mktemp("site") / "site"
    lines = []
    assert build_site.build(out=str(out), root=ROOT, say=lines.append, warn=lines.append) == 0
    return out


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    exe = find_browser()
    chrome = Chromium(exe, tmp_path_factory.mktemp("profile"))
    yield chrome
    chrome.close()


def open_page(chrome, url, shot):
    """Open `url` in a fresh tab; wait for the load and MathJax; return (checks, requests, failures,
    script errors); save a screenshot (scrolled to the first display maths, if any) to `shot`."""
    target = chrome.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    sid = chrome.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    for domain in ("Page", "Network", "Runtime"):
        chrome.send(f"{domain}.enable", session=sid)
    chrome.send("Emulation.setDeviceMetricsOverride",
                {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False},
                session=sid)
    chrome.events.clear()
    chrome.send("Page.navigate", {"url": url}, session=sid)
    chrome.wait_for("Page.loadEventFired")
    state = chrome.send("Runtime.evaluate", {"expression": TYPESET_JS, "awaitPromise": True,
                                             "returnByValue": True}, session=sid)["result"]["value"]
    checks = chrome.send("Runtime.evaluate", {"expression": CHECK_JS, "returnByValue": True},
                         session=sid)["result"]["value"]
    checks["mathjax"] = state
    scroll = ("const m = document.querySelector('.MathJax_Display');"
              " if (m) m.scrollIntoView({block: 'center'});")
    chrome.send("Runtime.evaluate", {"expression": scroll}, session=sid)
    time.sleep(0.2)
    shot_b64 = chrome.send("Page.captureScreenshot", {"format": "png"}, session=sid)["data"]
    png = base64.b64decode(shot_b64)
    shot.write_bytes(png)
    events = [e for e in chrome.events if e.get("sessionId") == sid]
    urls = {e["params"]["requestId"]: e["params"]["request"]["url"]
            for e in events if e.get("method") == "Network.requestWillBeSent"}
    failed = [(urls.get(e["params"]["requestId"], "?"), e["params"]["errorText"])
              for e in events if e.get("method") == "Network.loadingFailed"]
    thrown = [e["params"]["exceptionDetails"].get("exception", {}).get("description", "?")
              for e in events if e.get("method") == "Runtime.exceptionThrown"]
    chrome.send("Target.closeTarget", {"targetId": target})
    return checks, png, sorted(set(urls.values())), failed, thrown


def has_maths(nb_path):
    """True when a notebook's markdown holds TeX (`$...$` outside code)."""
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    text = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    text = re.sub(r"```.*?```|`[^`]*`", "", text, flags=re.DOTALL)
    return re.search(r"\$[^$\s][^$]*\$", text) is not None


def png_outputs(nb_path):
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    return sum("image/png" in o.get("data", {}) for c in nb["cells"] for o in c.get("outputs", []))


PAGES = [p.stem for p in build_site.find_notebooks(ROOT / "nbs")]


@pytest.mark.usefixtures("watchdog")
@pytest.mark.parametrize("stem", PAGES + ["index"])
def test_page_reads_offline_in_chromium(stem, browser, site, tmp_path):
    url = (site / f"{stem}.html").as_uri()
    checks, png, requested, failed, thrown = open_page(browser, url, tmp_path / f"{stem}.png")
    inside = site.as_uri() + "/"
    # about:blank: HTML-CSS declares a probe font `MathJax_Blank` at url(about:blank), which
    # Chromium refuses on file:// pages; it is neither outside the site nor a file it lacks
    outside = [u for u in requested if not u.startswith((inside, "data:", "about:blank"))]
    failed = [(u, why) for u, why in failed if u != "about:blank"]
    assert not outside, f"{stem}.html requested from outside the site: {outside}"
    assert not failed, f"{stem}.html: requests that failed: {failed}"
    assert not thrown, f"{stem}.html: script errors: {thrown}"
    assert not checks["raw"], f"{stem}.html: maths left as raw TeX: {checks['raw']}"
    assert checks["errors"] == 0, f"{stem}.html: {checks['errors']} TeX error(s) shown"
    assert all(i["done"] and i["width"] > 0 for i in checks["images"]), checks["images"]
    assert not_blank(png), f"{stem}.html: the screenshot is blank"
    if stem == "index":
        assert {f"{s}.html" for s in PAGES} <= set(checks["links"])  # the road links every page
        return
    nb_path = ROOT / "nbs" / f"{stem}.ipynb"
    assert checks["mathjax"] == "typeset"
    assert checks["tex"] == checks["typeset"], checks  # every snippet has its MathJax output
    if has_maths(nb_path):
        assert checks["tex"] > 0 and checks["font"] == "STIX-Web", checks
        assert any("/mathjax/fonts/HTML-CSS/STIX-Web/woff/" in u for u in requested)
    assert len(checks["images"]) == png_outputs(nb_path)  # every plot is on the page, and loaded
    i = PAGES.index(stem)
    expected = ({"index.html"} | ({f"{PAGES[i - 1]}.html"} if i else set())
                | ({f"{PAGES[i + 1]}.html"} if i + 1 < len(PAGES) else set()))
    assert expected <= set(checks["nav"]), checks["nav"]
