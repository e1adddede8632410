"""The trader's report: one self-contained HTML page per symbol and time that composes
the search, the model's calibrated answer and what ``evaluate`` measured.

Modules: ``gather`` (every number the page shows, from the stage that owns it),
``figures`` (the plotly charts), ``page`` (the summary in words, the tables and the
self-contained HTML; ``write_report``). Sits between ``demo`` and ``predict``: it imports
the predict, evaluation and search stages, and nothing imports it but the demo and the CLI.
"""

__all__ = ["figures", "gather", "page"]
