"""`zos nightly`: the night's fixed steps, one cost cap, one outcome (docs/nightly.md).

    check_night(db, config, options)            everything checked before any step (78, 2)
    run_night(db, config, options, checked=…)   decay, analyze, the layers; the summary
    night_error(summary)                        the error a night ends with (exit 1 or 75)
"""

from zos_cli.nightly.run import (
    CheckedNight,
    NightOptions,
    check_night,
    empty_summary,
    night_error,
    run_night,
)

__all__ = ["CheckedNight", "NightOptions", "check_night", "empty_summary", "night_error",
           "run_night"]
