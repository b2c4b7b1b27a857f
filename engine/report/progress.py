"""Progress bars for long runs: named stages of an in-memory command and counted tasks of a Dask run.

A run is a sequence of named stages (:data:`STAGES`: read, check, features, cluster, distances,
vote, write). The library reports stages through a plain callable, ``progress(stage)``, that its
methods accept as an optional ``progress=`` argument (default ``None``: nothing is shown, nothing
imported); :class:`StageProgress` is such a callable that draws one bar at a terminal::

    from xsift.report.progress import StageProgress
    with StageProgress("fit+classify", enabled=True) as progress:
        result = ClusterThenLabel().fit_classify(table, progress=progress)

The command line turns it on when standard error is a terminal (:func:`progress_wanted`): in logs,
pipes and CI nothing of it is printed. ``XSIFT_PROGRESS=0`` (or ``off``/``never``) switches it off,
``XSIFT_PROGRESS=1`` (``on``/``always``) draws it even without a terminal; ``--quiet`` switches it
off for one command.

The Dask commands' bars (:func:`xsift.distributed.cluster.show_progress`, one per stage, labelled
with it) follow the same rule; they live there because :mod:`xsift.distributed` imports nothing of
:mod:`xsift.report`.

The bars are drawn by rich, whose refresh thread keeps the elapsed time and the spinner moving
during a long stage (a GMM fit of millions of detections makes no intermediate calls). Lines the
command prints while a bar is shown appear above it when standard output is a terminal too; printed
to a file or pipe, standard output is left alone.
"""
from __future__ import annotations

import os
import sys
from typing import Callable, Iterable, Sequence

__all__ = ["STAGES", "ENV_VAR", "progress_wanted", "StageProgress", "ProgressCallback"]

#: the stages of an in-memory run, in order
STAGES = ("read", "check", "features", "cluster", "distances", "vote", "write")
#: environment variable: 0/off/never switches the bars off, 1/on/always forces them on
ENV_VAR = "XSIFT_PROGRESS"

#: what a method's ``progress=`` argument is: called with a stage name as that stage begins
ProgressCallback = Callable[[str], None]

_OFF = {"0", "off", "never", "no", "false"}
_ON = {"1", "on", "always", "yes", "true"}


def _env_setting() -> bool | None:
    """True/False from :data:`ENV_VAR`, None when unset or empty. Raises XsiftError on another value."""
    value = os.environ.get(ENV_VAR, "").strip().lower()
    if not value:
        return None
    if value in _OFF:
        return False
    if value in _ON:
        return True
    from xsift.errors import XsiftError
    raise XsiftError(f"environment variable {ENV_VAR}={os.environ[ENV_VAR]!r}: expected one of "
                     f"{', '.join(sorted(_OFF | _ON))}")


def progress_wanted(quiet: bool = False, stream=None) -> bool:
    """Whether a command draws progress bars: not with ``quiet``; else as :data:`ENV_VAR` says; else
    when ``stream`` (default standard error) is a terminal."""
    if quiet:
        return False
    setting = _env_setting()
    if setting is not None:
        return setting
    return _isatty(sys.stderr if stream is None else stream)


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):   # closed or replaced streams
        return False


def _console(stream):
    from rich.console import Console
    # forced when the caller decided to draw (XSIFT_PROGRESS=1 on a pipe, or a terminal rich misjudges)
    return Console(file=stream, force_terminal=True, highlight=False)


class StageProgress:
    """One bar over the named stages of a run, drawn on ``stream`` (default standard error) while
    ``enabled``; with ``enabled=False`` every call does nothing and rich is never imported.

    Call it with a stage name as that stage begins (``progress("features")``): the bar shows
    ``title · stage``, the stage's number out of ``len(stages)`` and the elapsed time, and fills with
    the stages done. A stage may begin again (fitting and then
    classifying both compute features): the count never goes back. Names outside ``stages`` are
    shown without moving the count. Use it as a context manager, or call :meth:`close`.
    """

    def __init__(self, title: str, stages: Sequence[str] = STAGES, *, enabled: bool = False, stream=None):
        self.title = title
        self.stages = tuple(stages)
        self.enabled = bool(enabled)
        self.current: str | None = None
        self._done = 0
        self._bar = None
        self._task = None
        if self.enabled:
            from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
            self._bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                 TextColumn("stage {task.fields[number]}/{task.total:.0f}"),
                                 TimeElapsedColumn(), console=_console(stream or sys.stderr),
                                 transient=False, redirect_stdout=_isatty(sys.stdout))
            self._bar.start()
            self._task = self._bar.add_task(f"{title} · starting", total=len(self.stages), number=0)

    def __call__(self, stage: str) -> None:
        self.current = stage
        if not self.enabled:
            return
        if stage in self.stages:
            self._done = max(self._done, self.stages.index(stage))
        # the bar fills with the stages done; the text numbers the stage under way
        # redrawn at once: a stage shorter than the refresh period still shows its name
        self._bar.update(self._task, completed=self._done, number=self._done + 1,
                         description=f"{self.title} · {stage}", refresh=True)

    def close(self) -> None:
        """End the bar (all stages counted done); idempotent."""
        if self._bar is not None:
            self._bar.update(self._task, completed=len(self.stages), number=len(self.stages),
                             description=f"{self.title} · done")
            self._bar.stop()
            self._bar = None

    def __enter__(self) -> "StageProgress":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._bar is not None and exc_type is not None:
            # leave the bar where it stopped, so the stage that failed stays on the screen
            self._bar.stop()
            self._bar = None
        self.close()

