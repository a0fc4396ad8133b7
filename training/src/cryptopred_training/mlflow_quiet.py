"""Keep MLflow's chatter out of the user's terminal while a run is logged and registered.

MLflow prints run and experiment links to stdout, registry progress to stderr, INFO lines on
its own handler, a warning about the pip version and a schema hint about integer columns
(ours are millisecond timestamps, never missing). None of it is something a user of
`cryptopred train` or the demo can act on: the CLI prints the run, version and decision
itself. The captured text goes to this module's logger at DEBUG; MLflow's errors still show.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator

log = logging.getLogger(__name__)

INTEGER_SCHEMA_HINT = "Hint: Inferred schema contains integer column"


@contextlib.contextmanager
def quiet_mlflow() -> Iterator[None]:
    """Within the block: MLflow logs only errors, its prints and the integer hint are kept
    from stdout and stderr (logged at DEBUG instead)."""
    mlflow_log = logging.getLogger("mlflow")
    level = mlflow_log.level
    captured = io.StringIO()
    mlflow_log.setLevel(logging.ERROR)
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(captured),
            contextlib.redirect_stderr(captured),
        ):
            warnings.filterwarnings("ignore", message=INTEGER_SCHEMA_HINT, category=UserWarning)
            yield
    finally:
        mlflow_log.setLevel(level)
        text = captured.getvalue().strip()
        if text:
            log.debug("mlflow said: %s", text)
