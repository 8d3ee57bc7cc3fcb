"""Every command that reads the settings, as `python` arguments: what the settings tests run."""

COMMANDS = {
    "api": ["-m", "api"],
    "collector": ["-m", "collector"],
    "collector once": ["-m", "collector", "once"],
    "collector backfill": ["-m", "collector", "backfill", "--hours", "1"],
    "migrate": ["-m", "datatracker", "migrate"],
}
