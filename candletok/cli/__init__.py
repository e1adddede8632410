"""The ``candletok`` command line (installed as ``candletok.cli``): parsing and printing only."""

# What the package offers: its modules. Names are imported from them; this file stays
# light, so importing one module never loads the others (nor torch).
__all__ = [
    "app", "cmd_data", "cmd_demo", "cmd_download", "cmd_eval", "cmd_model", "cmd_report",
    "cmd_search", "cmd_vocab", "cmd_watch", "commands", "configopts", "main", "options",
]
