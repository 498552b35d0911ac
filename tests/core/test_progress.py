"""rotation.core.progress on its own: a long task's lines say done/total, rate and ETA from the observed rate, a few
per task (a tenth more done, at most one a second; else one every few seconds), and a final line with the total and
rate; a task over within a second says nothing; a resumed task's rate counts only this run's work. The revocation wait
reports each check through it. The clock is scripted: nothing here depends on the machine's speed."""

from __future__ import annotations

import re

from rotation.core import progress
from rotation.core.progress import Meter, Paced, Progress
from rotation.providers.base import CheckResult, CredentialCheck
from rotation.providers.revocation import Clock, RevocationAct, Wait, confirm_refused, now

LINE = re.compile(r"^staging clients: (?P<done>[\d,]+)/(?P<total>[\d,]+) rows \((?P<pct>\d+)%\), "
                  r"(?P<rate>[\d,.]+) rows/s, ETA (?P<eta>\S+)$")


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


def run_task(pages: int, rows: int, page_s: float, *, since: int = 0) -> list[str]:
    """A task of `pages` pages of `rows` rows, each taking `page_s` seconds, reported after every page."""
    clock, lines = FakeClock(), list[str]()
    task = Paced(lines.append, every_s=5.0, min_gap_s=1.0, clock=clock).task("staging clients")
    total = since + pages * rows
    for n in range(1, pages + 1):
        clock.t += page_s
        task(Progress(since + n * rows, total, clock.t, final=n == pages, since=since))
    return lines


def test_a_long_task_shows_done_total_rate_and_eta_a_few_times_then_its_total() -> None:
    lines = run_task(pages=100, rows=40, page_s=0.05)  # 4,000 rows in 5 s: a tenth every half second
    *running, last = lines
    assert 3 <= len(running) <= 5, lines  # at most one a second
    for line in running:
        found = LINE.match(line)
        assert found, line
        done, total = int(found["done"].replace(",", "")), int(found["total"].replace(",", ""))
        assert 0 < done < total == 4000 and found["rate"] == "800"
        assert found["eta"] == progress.duration((total - done) / 800)
    assert last == "staging clients: 4,000 rows in 5.0s, 800 rows/s"


def test_a_slow_task_says_something_every_few_seconds_between_tenths() -> None:
    lines = run_task(pages=20, rows=1, page_s=3.0)  # a tenth every 6 s
    assert len(lines) == 10 + 1 - 1, lines  # each tenth (the last is the final line)
    lines = run_task(pages=4, rows=1, page_s=6.0)  # a quarter every 6 s: a line each time, at least every 5 s
    assert len(lines) == 4, lines


def test_a_task_over_within_a_second_says_nothing() -> None:
    assert run_task(pages=10, rows=100, page_s=0.05) == []


def test_a_resumed_task_counts_only_this_runs_work_in_its_rate() -> None:
    lines = run_task(pages=10, rows=100, page_s=0.5, since=9000)
    assert lines[-1] == "staging clients: 10,000 rows (9,000 done before) in 5.0s, 200 rows/s"
    assert all("200 rows/s" in line for line in lines), lines


def test_a_meter_counts_from_threads_and_its_final_count_may_be_exact() -> None:
    seen: list[Progress] = []
    meter = Meter(1000, seen.append)
    for _ in range(3):
        meter.add(333)
    meter.finish(1000)
    assert [p.done for p in seen] == [333, 666, 999, 1000] and seen[-1].final and not seen[-2].final


def test_the_installed_reporter_gets_the_tasks_and_silent_says_nothing() -> None:
    lines: list[str] = []
    clock = FakeClock()
    with progress.installed(Paced(lines.append, clock=clock)):
        task = progress.task("staging clients")
        clock.t = 6.0
        task(Progress(1, 2, 6.0))
        with progress.installed(progress.Silent()):
            progress.task("staging clients")(Progress(2, 2, 7.0, final=True))
    assert lines == ["staging clients: 1/2 rows (50%), 0.2 rows/s, ETA 6.0s"]


def test_the_revocation_wait_reports_each_check_with_the_time_left() -> None:
    accepted = CheckResult("smtp", True, 235, "2.7.0", "accepted", "fp", CredentialCheck.ACCEPTED)
    refused = CheckResult("smtp", False, 535, "5.7.8", "authentication failed", "fp", CredentialCheck.REFUSED)
    answers, clock, lines = [accepted, accepted, refused], FakeClock(), list[str]()
    act = RevocationAct("the operator", "asked at the operator's terminal", now(), now())
    with progress.installed(Paced(lines.append, clock=clock)):
        revocation = confirm_refused(lambda: answers.pop(0), act, Wait(60, 10), Clock(clock.sleep, clock))
    assert revocation.proven
    assert lines == ["waiting for smtp to refuse the revoked credential: 2/7 checks (28%), 0.1 checks/s, ETA 50s",
                     "waiting for smtp to refuse the revoked credential: 3 checks in 20s, 0.1 checks/s"]


def test_a_sink_that_fails_silences_the_task_and_never_stops_the_work() -> None:
    """The operator's terminal went away (EIO on a closed pty): the task goes on without lines."""
    calls: list[str] = []

    def gone(line: str) -> None:
        calls.append(line)
        raise OSError(5, "Input/output error")

    clock = FakeClock()
    task = Paced(gone, clock=clock).task("staging clients")
    for n in range(1, 11):
        clock.t += 2.0
        task(Progress(n, 10, clock.t, final=n == 10))
    assert len(calls) == 1


def test_a_meter_beats_while_its_block_runs_and_not_after() -> None:
    """Work counted in a few large parts (a slice per connection) still says it is going between them."""
    import threading

    seen: list[Progress] = []
    beat = threading.Event()

    def hear(p: Progress) -> None:
        seen.append(p)
        beat.set()

    with Meter(10, hear, beat_s=0.01) as meter:
        assert beat.wait(10), "no beat while the block ran"
        meter.add(4)
    meter.finish()
    after = len(seen)
    threading.Event().wait(0.05)
    assert len(seen) == after and seen[-1].final and seen[-1].done == 4
    assert seen[0].done == 0 and not seen[0].final


def test_before_any_part_is_done_the_line_says_how_long_so_far_not_an_eta() -> None:
    assert Progress(0, 300_000, 40.0).line("values") == "0/300,000 values (0%), 40s so far, no rate yet"
    assert Progress(9000, 10_000, 3.0, since=9000).line() == "9,000/10,000 rows (90%), 3.0s so far, no rate yet"
