"""The ``candletok`` command line (installed as ``candletok.cli``): parsing and printing only."""
