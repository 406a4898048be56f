"""Where a long job is: progress lines through ``logging`` at a bounded rate.

A ``Progress`` logs to the ``promis_repro.progress`` logger at INFO, so the log format time-stamps
every line. It logs its first update, its last (``done == total`` or ``finish()``), and in between at
most one line every ``interval`` seconds: ``$PROMIS_REPRO_PROGRESS_SECONDS``, else 60. A line reads
``ppo: 512/10000 timesteps (5.1%), last_selection_soft_pass 0.4167, elapsed 0:12:03, ETA 3:43:17``;
the ETA extrapolates the rate since this process started (a resumed job counts from where it resumed).

Where the lines go is set once per command (``configure_logging``, from the command line's
``--quiet`` and ``--log-file``): the terminal unless ``--quiet``, and the log file always.
``terminal=False`` marks a Progress's lines as for the log file only (a stage's own ``quiet``).
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from promis_repro.errors import UserError

LOGGER_NAME = "promis_repro.progress"
INTERVAL_ENV = "PROMIS_REPRO_PROGRESS_SECONDS"
DEFAULT_INTERVAL = 60.0

log = logging.getLogger(LOGGER_NAME)


def default_interval() -> float:
    """Seconds between two progress lines: ``$PROMIS_REPRO_PROGRESS_SECONDS``, else 60."""
    raw = os.environ.get(INTERVAL_ENV)
    if raw is None or raw.strip() == "":
        return DEFAULT_INTERVAL
    try:
        value = float(raw)
    except ValueError:
        raise UserError(f"${INTERVAL_ENV} must be a number of seconds, not {raw!r}") from None
    if not math.isfinite(value) or value < 0:
        raise UserError(f"${INTERVAL_ENV} must be a number of seconds >= 0, not {raw!r}")
    return value


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class Progress:
    """``what``: ``done``/``total`` ``unit``, with details (calls, tokens, last evaluation) on each line.

    ``done``: where this process starts (a resumed job's count so far).
    """

    def __init__(
        self,
        what: str,
        total: int,
        unit: str,
        *,
        done: int = 0,
        interval: float | None = None,
        terminal: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what, self.total, self.unit = what, total, unit
        self.interval = default_interval() if interval is None else interval
        self.terminal = terminal
        self.clock = clock
        self.started = clock()
        self.first_done = done  # where this process started counting (ETA)
        self.last_logged: float | None = None
        self.done = done
        self.details: dict[str, Any] = {}
        self.logged_state: tuple[int, tuple[tuple[str, Any], ...]] | None = None
        self.lines = 0

    def update(self, done: int, **details: Any) -> None:
        """``done`` of ``total`` are done (details: the latest values to show); logs if a line is due."""
        now = self.clock()
        self.done = done
        self.details.update(details)
        last = done >= self.total and self.logged_state != self._state()
        if self.last_logged is None or now - self.last_logged >= self.interval or last:
            self._emit(now)

    def finish(self, done: int | None = None, **details: Any) -> None:
        """Log the final state (``done``, if given), unless the last line already showed it."""
        if done is not None:
            self.done = done
        self.details.update(details)
        if self.logged_state != self._state():
            self._emit(self.clock())

    def _state(self) -> tuple[int, tuple[tuple[str, Any], ...]]:
        return self.done, tuple(self.details.items())

    def line(self, now: float) -> str:
        share = f" ({100 * self.done / self.total:.1f}%)" if self.total else ""
        parts = [f"{self.what}: {self.done}/{self.total} {self.unit}{share}"]
        parts += [f"{name} {_value(value)}" for name, value in self.details.items() if value is not None]
        elapsed = now - self.started
        parts.append(f"elapsed {_duration(elapsed)}")
        progressed = self.done - self.first_done
        if 0 < self.done < self.total and progressed > 0 and elapsed > 0:
            parts.append(f"ETA {_duration(elapsed / progressed * (self.total - self.done))}")
        return ", ".join(parts)

    def _emit(self, now: float) -> None:
        log.info("%s", self.line(now), extra={"terminal": self.terminal})
        self.last_logged = now
        self.logged_state = self._state()
        self.lines += 1


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _shown(record: logging.LogRecord, *, verbose: bool, terminal: bool) -> bool:
    """Whether a handler writes ``record``: warnings and errors always; progress lines (``promis_repro.progress``)
    always, except on the terminal those a stage marked ``terminal=False``; other INFO lines with --verbose,
    and the project's own in the log file always."""
    if terminal and getattr(record, "terminal", True) is False:
        return False
    if record.levelno >= logging.WARNING or record.name == LOGGER_NAME or verbose:
        return True
    return not terminal and record.name.split(".")[0] == "promis_repro"


def configure_logging(*, verbose: bool, quiet: bool, log_file: str | None) -> Callable[[], None]:
    """The terminal's handler (stderr) and the log file's; returns what undoes it (``main`` runs in tests too).

    ``quiet``: the terminal gets warnings and errors only, and nothing when ``log_file`` is given (the
    pipeline's rules send stderr into the same file); ``main`` turns off every tqdm bar too. The log
    file gets everything the terminal would without ``quiet``, plus the project's INFO lines; the
    format time-stamps every line.
    """
    root = logging.getLogger()
    level = root.level
    handlers: list[logging.Handler] = []
    if not (quiet and log_file):
        terminal = logging.StreamHandler(sys.stderr)
        terminal.setLevel(logging.WARNING if quiet else logging.INFO)
        terminal.addFilter(lambda record: _shown(record, verbose=verbose, terminal=True))
        handlers.append(terminal)
    if log_file:
        os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
        file = logging.FileHandler(log_file, mode="a", encoding="utf-8")
        file.addFilter(lambda record: _shown(record, verbose=verbose, terminal=False))
        handlers.append(file)
    for handler in handlers:
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)  # Python warnings go where the log lines go (not past --quiet)

    def undo() -> None:
        logging.captureWarnings(False)
        for handler in handlers:
            root.removeHandler(handler)
            handler.close()
        root.setLevel(level)

    return undo
