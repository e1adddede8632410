"""``python -m candletok.cli ARGS`` is ``candletok ARGS``.

It is what ``torchrun`` starts on every rank of a distributed run::

    torchrun --nproc_per_node 2 -m candletok.cli train DIR --batch 32

(``candletok train DIR --nproc 2`` launches exactly that). A module named
``candletok.train`` would shadow the lazy ``candletok.train`` function, hence this one.
"""

from candletok.cli.main import run

if __name__ == "__main__":
    run()
