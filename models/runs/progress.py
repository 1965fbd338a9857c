"""Progress of the long commands (`framecast train`, `evaluate`, `import`), in one place.

``progress(total, unit=..., desc=...)`` decides how progress is shown, on stderr:

- stderr is a terminal: a tqdm bar (done/total, rate, time left), cleared when it closes;
- it is not (a log file, CI): plain lines, one each time another 10% is done (at most one every
  ``min_interval`` seconds, and at least one every ``interval`` seconds while work goes on) and
  one when it is done, e.g. ``train epoch 3/60: 800/1600 clips, 12.8 clips/s, 1m02s left``;
- ``quiet=True``: nothing.

``keras_callback(...)`` shows a Keras ``fit`` that way, one display per epoch updated per batch,
followed by the per-epoch summary line that Keras prints with ``verbose=2`` (fit then runs with
``verbose=0``). Importing this module does not load Keras.
"""

from __future__ import annotations

import functools
import io
import math
import os
import shutil
import sys
import time
from typing import IO, Any

__all__ = ["Progress", "progress", "keras_callback", "format_duration", "is_terminal"]


def format_duration(seconds: float) -> str:
    """``45s``, ``1m02s``, ``2h03m``."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def is_terminal(stream: object) -> bool:
    """Whether ``stream`` is an interactive terminal (False for files, pipes, StringIO)."""
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (ValueError, OSError):  # a closed or detached stream
        return False


def _terminal_columns(stream: IO[str]) -> int:
    """The terminal's width, 0 when it does not say (a pseudo-terminal of size 0x0)."""
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError, io.UnsupportedOperation):
        return 0


class Progress:
    """The display of one piece of work: ``update(n)`` as it is done, ``stage(text)`` to say what
    it is doing, ``close()`` at the end (or use it as a context manager). This base class shows
    nothing (``quiet``)."""

    def __init__(self, total: int | None = None, *, unit: str = "clip", desc: str = "") -> None:
        self.total, self.unit, self.desc = total, unit, desc
        self.n = 0
        self.closed = False

    def update(self, n: int = 1) -> None:
        self.n += n

    def stage(self, text: str) -> None:
        """Say what the work is doing now (a step without a count, e.g. ``timing a call…``)."""

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Bar(Progress):
    """A tqdm bar on a terminal."""

    def __init__(self, total: int | None, *, unit: str, desc: str, stream: IO[str]) -> None:
        from tqdm import tqdm

        super().__init__(total, unit=unit, desc=desc)
        # tqdm follows the terminal's size, and draws nothing where it is 0x0 (a bare
        # pseudo-terminal): then take $COLUMNS/$LINES, else 80x24
        sized = _terminal_columns(stream) > 0
        fallback = shutil.get_terminal_size()
        self._bar = tqdm(
            total=total,
            desc=desc,
            unit=unit,
            file=stream,
            leave=False,  # the command's own result lines follow
            dynamic_ncols=sized,
            ncols=None if sized else fallback.columns,
            nrows=None if sized else fallback.lines,
            mininterval=0.2,
            # no count to show: "import: timing a call… [00:03]"
            bar_format=None if total is not None else "{desc} [{elapsed}]",
        )
        self._staged = False

    def update(self, n: int = 1) -> None:
        if self._staged:  # the work goes on: drop the stage's words
            self._staged = False
            if self.n == 0:  # and time the rate from here
                self._bar.reset(total=self.total)
            self._bar.set_postfix_str("", refresh=False)
        super().update(n)
        self._bar.update(n)

    def stage(self, text: str) -> None:
        self._staged = True
        if self.total is None:
            self._bar.set_description_str(f"{self.desc}: {text}")
        else:
            self._bar.set_postfix_str(text)

    def close(self) -> None:
        if not self.closed:
            self._bar.close()
        super().close()


class _Lines(Progress):
    """Plain periodic lines, for logs and CI."""

    def __init__(
        self,
        total: int | None,
        *,
        unit: str,
        desc: str,
        stream: IO[str],
        every: float,
        min_interval: float,
        interval: float,
    ) -> None:
        super().__init__(total, unit=unit, desc=desc)
        self.stream, self.every = stream, every
        self.min_interval, self.interval = min_interval, interval
        self._start = time.perf_counter()
        self._first: tuple[float, int] | None = None  # (time, n) after the first update
        self._last_line = self._start
        self._last_mark = 0  # the last multiple of ``every`` reported
        self._done = False

    def _units(self) -> str:
        return self.unit + "s"

    def rate(self, now: float | None = None) -> float | None:
        """Units per second, leaving out the first update (it often includes compiling)."""
        now = time.perf_counter() if now is None else now
        if self._first is not None and self.n > self._first[1] and now > self._first[0]:
            return (self.n - self._first[1]) / (now - self._first[0])
        if self.n and now > self._start:
            return self.n / (now - self._start)
        return None

    def _say(self, text: str) -> None:
        prefix = f"{self.desc}: " if self.desc else ""
        print(prefix + text, file=self.stream, flush=True)

    def line(self, now: float | None = None) -> str:
        """``800/1600 clips, 12.8 clips/s, 1m02s left`` (or ``…, done in 2m05s``)."""
        now = time.perf_counter() if now is None else now
        count = f"{self.n}/{self.total}" if self.total is not None else f"{self.n}"
        parts = [f"{count} {self._units()}"]
        rate = self.rate(now)
        if rate is not None:
            parts.append(f"{rate:.1f} {self._units()}/s")
        if self.total is not None and self.n >= self.total:
            parts.append(f"done in {format_duration(now - self._start)}")
        elif self.total is not None and rate:
            parts.append(f"{format_duration((self.total - self.n) / rate)} left")
        return ", ".join(parts)

    def update(self, n: int = 1) -> None:
        super().update(n)
        now = time.perf_counter()
        if self._first is None:
            self._first = (now, self.n)
        if self.total is not None and self.n >= self.total:
            if not self._done:
                self._done = True
                self._say(self.line(now))
                self._last_line = now
            return
        mark = (
            math.floor(round(self.n / self.total / self.every, 9))
            if self.total and self.every > 0
            else 0
        )
        due = now - self._last_line >= self.interval
        if due or (mark > self._last_mark and now - self._last_line >= self.min_interval):
            self._last_mark = max(mark, self._last_mark)
            self._last_line = now
            self._say(self.line(now))

    def stage(self, text: str) -> None:
        if self.n == 0:  # the rate starts with the work, not with what came before it
            self._start = time.perf_counter()
        self._say(text)
        self._last_line = time.perf_counter()


def progress(
    total: int | None = None,
    *,
    unit: str = "clip",
    desc: str = "",
    quiet: bool = False,
    stream: IO[str] | None = None,
    lines: bool = True,
    every: float = 0.1,
    min_interval: float = 5.0,
    interval: float = 60.0,
) -> Progress:
    """A display for ``total`` units of work (None: unknown, stages only) on ``stream``
    (default: ``sys.stderr`` at call time): a tqdm bar on a terminal, else plain lines (none with
    ``lines=False``, for short commands whose own output is the log), nothing when ``quiet``.

    Plain lines come each ``every`` of the total (10%), at most one per ``min_interval`` seconds
    and at least one per ``interval`` seconds, plus one when the total is reached."""
    stream = sys.stderr if stream is None else stream
    if quiet:
        return Progress(total, unit=unit, desc=desc)
    if is_terminal(stream):
        return _Bar(total, unit=unit, desc=desc, stream=stream)
    if not lines:
        return Progress(total, unit=unit, desc=desc)
    return _Lines(
        total,
        unit=unit,
        desc=desc,
        stream=stream,
        every=every,
        min_interval=min_interval,
        interval=interval,
    )


def _format_metric(value: float) -> str:
    """As Keras' ``verbose=2`` epoch line writes a metric."""
    return f"{value:.4f}" if value > 1e-3 else f"{value:.4e}"


def _format_step_time(seconds: float) -> str:
    """As Keras writes the time per step: ``1s/step``, ``250ms/step``, ``80us/step``."""
    if seconds >= 1 or seconds == 0:
        return f"{seconds:.0f}s/step"
    if seconds >= 1e-3:
        return f"{seconds * 1000.0:.0f}ms/step"
    return f"{seconds * 1e6:.0f}us/step"


@functools.cache
def _callback_class() -> type:
    import keras

    class FitProgress(keras.callbacks.Callback):
        """One :func:`progress` display per epoch of ``fit``, updated per batch, then the epoch's
        summary line (what ``fit(verbose=2)`` prints). ``clips`` counts every clip trained on."""

        def __init__(
            self,
            *,
            batch_size: int,
            steps: int | None = None,
            epochs: int | None = None,
            desc: str = "train",
            unit: str = "clip",
            quiet: bool = False,
            summary: bool = True,
            stream: IO[str] | None = None,
            out: IO[str] | None = None,
            **options: Any,
        ) -> None:
            super().__init__()
            self.batch_size, self.steps, self.epochs = batch_size, steps, epochs
            self.desc, self.unit, self.quiet, self.summary = desc, unit, quiet, summary
            self.stream, self.out, self.options = stream, out, options
            self.clips = 0
            self.display: Progress | None = None
            self._epoch_start = self._after_first = 0.0
            self._batches = 0

        def _epochs(self) -> int | None:
            return self.epochs or (self.params or {}).get("epochs")

        def _steps(self) -> int | None:
            return self.steps or (self.params or {}).get("steps")

        def _print(self, text: str) -> None:
            print(text, file=self.out if self.out is not None else sys.stdout, flush=True)

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.close()
            epochs, steps = self._epochs(), self._steps()
            if self.summary and epochs and epochs > 1:
                self._print(f"Epoch {epoch + 1}/{epochs}")
            self.display = progress(
                steps * self.batch_size if steps else None,
                unit=self.unit,
                desc=f"{self.desc} epoch {epoch + 1}/{epochs}" if epochs else self.desc,
                quiet=self.quiet,
                stream=self.stream,
                **self.options,
            )
            self._epoch_start = time.perf_counter()
            self._after_first = 0.0
            self._batches = 0

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            self._batches += 1
            if self._batches == 1:
                self._after_first = time.perf_counter()
            self.clips += self.batch_size
            if self.display is not None:
                self.display.update(self.batch_size)

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            self.close()
            if not self.summary:
                return
            now = time.perf_counter()
            steps = self._steps() or self._batches
            if self._batches > 1:
                per_step = (now - self._after_first) / (steps - 1)
            else:
                per_step = (now - self._epoch_start) / max(1, steps)
            width = int(math.log10(steps)) + 1 if steps > 0 else 1
            parts = [
                f"{self._batches:{width}d}/{steps}",
                f"{now - self._epoch_start:.0f}s",
                _format_step_time(per_step),
            ]
            for k, v in (logs or {}).items():
                try:
                    parts.append(f"{k}: {_format_metric(float(v))}")
                except (TypeError, ValueError):
                    parts.append(f"{k}: {v}")
            self._print(" - ".join(parts))

        def close(self) -> None:
            """Close the epoch's display (also after an interrupted ``fit``)."""
            if self.display is not None:
                self.display.close()
                self.display = None

    return FitProgress


def keras_callback(
    *,
    batch_size: int,
    steps: int | None = None,
    epochs: int | None = None,
    desc: str = "train",
    unit: str = "clip",
    quiet: bool = False,
    summary: bool = True,
    stream: IO[str] | None = None,
    out: IO[str] | None = None,
    **options: Any,
) -> Any:
    """A ``keras.callbacks.Callback`` showing ``fit`` in clips: a :func:`progress` display per
    epoch (``steps × batch_size`` clips; ``steps``/``epochs`` default to fit's own) updated after
    every batch, then, unless ``summary=False``, Keras' ``verbose=2`` lines on ``out`` (stdout):
    ``Epoch 3/60`` and ``100/100 - 148s - 1s/step - loss: 0.0239 - val_loss: 0.0235``. Run
    ``fit`` with ``verbose=0`` beside it. ``quiet`` keeps the summary lines only; ``options`` go
    to :func:`progress`. The callback's ``clips`` counts the clips trained on."""
    return _callback_class()(
        batch_size=batch_size,
        steps=steps,
        epochs=epochs,
        desc=desc,
        unit=unit,
        quiet=quiet,
        summary=summary,
        stream=stream,
        out=out,
        **options,
    )
