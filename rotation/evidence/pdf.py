"""The print of a run's report: index.html rendered to report.pdf by Chromium (headless), the way an auditor prints it,
with a running header and footer on every page (the target, REHEARSAL in staging, the run id, page x of y).

Chromium's CSS does not implement @page margin boxes, and a `position: fixed` element cannot count pages, so the
header and footer are Chromium's own print templates (DevTools `Page.printToPDF` with `displayHeaderFooter`). The
DevTools protocol is spoken over a pipe (`--remote-debugging-pipe`: commands on fd 3, answers on fd 4, each a JSON
object ended by NUL), so no port is opened and no package beyond the standard library is needed."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from html import escape
from pathlib import Path

from rotation.core.errors import RotationError

CHROMIUM_ENV = "ROTATION_CHROMIUM"
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
PDF = "report.pdf"
TIMEOUT_S = 120.0


class PdfError(RotationError, RuntimeError):
    """The print could not be made; the message says why (never a traceback)."""


def find_chromium() -> str | None:
    """$ROTATION_CHROMIUM, else the first Chromium on PATH."""
    configured = os.environ.get(CHROMIUM_ENV)
    if configured:
        return shutil.which(configured) or (configured if Path(configured).is_file() else None)
    return next((found for name in CANDIDATES if (found := shutil.which(name))), None)


@dataclass(frozen=True)
class Running:
    """What every printed page carries: which target (REHEARSAL in staging), which run, page x of y."""

    target: str
    run_id: str
    run_name: str

    @property
    def label(self) -> str:
        return "LIVE run" if self.target == "live" else f"REHEARSAL ({self.target.upper()}): not a production change"

    def header(self) -> str:
        return _band(f"<b>{escape(self.label)}</b>", f"Credential rotation evidence · {escape(self.run_name)}")

    def footer(self) -> str:
        return _band(f"run id {escape(self.run_id)}",
                     'page <span class="pageNumber"></span> of <span class="totalPages"></span>')


def _band(left: str, right: str) -> str:
    # Chromium renders the templates at a default font size of 0: every size is set here.
    return ('<div style="font: 9pt DejaVu Sans, Helvetica, Arial, sans-serif; color: #1d2329; width: 100%; '
            'margin: 0 10mm; display: flex; justify-content: space-between;">'
            f"<span>{left}</span><span>{right}</span></div>")


def _as_fd_3_and_4(commands: int, answers: int) -> None:
    """In the child, before exec: the pipe ends become fd 3 and 4 (via fresh copies, so neither overwrites the
    other when one of them already is 3 or 4)."""
    commands, answers = os.dup(commands), os.dup(answers)
    os.dup2(commands, 3)
    os.dup2(answers, 4)


class _Pipe:
    """One Chromium with its DevTools pipe."""

    def __init__(self, chromium: str, profile: str) -> None:
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        os.set_inheritable(to_chrome_r, True)
        os.set_inheritable(from_chrome_w, True)
        args = [chromium, "--headless", "--remote-debugging-pipe", "--disable-gpu", "--no-first-run",
                "--no-default-browser-check", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-extensions", f"--user-data-dir={profile}"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.append("--no-sandbox")  # Chromium refuses to run its sandbox as root
        # The child gets the pipe ends as fd 3 (commands) and 4 (answers), as --remote-debugging-pipe expects.
        # Chromium puts its singleton socket under $TMPDIR; a long TMPDIR (pytest's tmp_path) passes the 108-byte
        # limit of a Unix socket path and Chromium exits at once. The profile folder is short: it is $TMPDIR here.
        env = {**os.environ, "TMPDIR": profile}
        self.process = subprocess.Popen(  # noqa: S603  (a browser found on PATH, arguments of our own)
            args, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            pass_fds=(3, 4), preexec_fn=lambda: _as_fd_3_and_4(to_chrome_r, from_chrome_w))  # noqa: PLW1509
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer = b""
        self._next = 0

    def call(self, method: str, params: dict[str, object] | None = None, session: str | None = None,
             deadline: float = 0.0) -> dict[str, object]:
        self._next += 1
        message: dict[str, object] = {"id": self._next, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        while True:
            answer = self._read(deadline)
            if answer.get("id") == self._next:
                if "error" in answer:
                    raise PdfError(f"Chromium refused {method}: {answer['error']}")
                result = answer.get("result")
                return result if isinstance(result, dict) else {}

    def wait_event(self, name: str, deadline: float) -> None:
        while self._read(deadline).get("method") != name:
            pass

    def _read(self, deadline: float) -> dict[str, object]:
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline:
                raise PdfError(f"Chromium did not answer within {TIMEOUT_S:g} s")
            chunk = os.read(self._from_chrome, 1 << 20)
            if not chunk:
                raise PdfError("Chromium closed its DevTools pipe (it exited)")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message = json.loads(raw)
        return message if isinstance(message, dict) else {}

    def close(self) -> None:
        try:
            os.write(self._to_chrome, json.dumps({"id": 0, "method": "Browser.close"}).encode() + b"\0")
        except OSError:
            pass
        for fd in (self._to_chrome, self._from_chrome):
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _short_tmp() -> str | None:
    """A short folder for Chromium's profile (see _Pipe): mkdtemp makes it 0700 with a random name."""
    short = "/tmp"  # noqa: S108
    return short if os.path.isdir(short) and os.access(short, os.W_OK) else None


def render_pdf(page: Path, out: Path, running: Running, *, chromium: str | None = None) -> Path:
    """Print `page` (A4, the page's own @page margins, backgrounds) to `out` with the running header and footer."""
    if not page.is_file():
        raise PdfError(f"{page} does not exist")
    browser = chromium or find_chromium()
    if browser is None:
        raise PdfError(f"no Chromium found (install chromium, or set ${CHROMIUM_ENV} to its path)")
    deadline = time.monotonic() + TIMEOUT_S
    with tempfile.TemporaryDirectory(prefix="rotation-pdf-", dir=_short_tmp()) as profile:
        try:
            chrome = _Pipe(browser, profile)
        except OSError as exc:
            raise PdfError(f"{browser} could not be started ({type(exc).__name__})") from None
        try:
            target = chrome.call("Target.createTarget", {"url": "about:blank"}, deadline=deadline)
            attached = chrome.call("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True},
                                   deadline=deadline)
            session = str(attached["sessionId"])
            chrome.call("Page.enable", session=session, deadline=deadline)
            went = chrome.call("Page.navigate", {"url": page.resolve().as_uri()}, session=session, deadline=deadline)
            if went.get("errorText"):
                raise PdfError(f"Chromium could not open {page}: {went['errorText']}")
            chrome.wait_event("Page.loadEventFired", deadline)
            printed = chrome.call("Page.printToPDF", {
                "displayHeaderFooter": True, "headerTemplate": running.header(),
                "footerTemplate": running.footer(), "printBackground": True, "preferCSSPageSize": True,
            }, session=session, deadline=deadline)
        finally:
            chrome.close()
    data = base64.b64decode(str(printed["data"]))
    out.write_bytes(data)
    return out
