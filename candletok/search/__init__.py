"""Pattern search over a dataset folder: takes the last N candles of a query and a time T,
gives the matches whose forward windows end by T, with their outcomes next to the base rate.

    from candletok.search import similar, motifs
    res = similar("ds", "AAPL", last=5)   # exact (coarse symbols) | nearest | model | learned
    res.outcomes, res.matches, res.words
    motifs("ds", n=3).motifs

Modules: ``index`` (the saved index, keyed to the manifest), ``timerule`` (what may
answer a query at time T), ``nearest`` (exact feature-space search), ``vectors`` (dense
vector indexes: numpy exact, faiss optional), ``embed`` (CandleGPT hidden states, the
vector cache), ``retrieval`` and ``retrieval_train`` (the search model trained for
retrieval, ``--mode learned``),
``stats`` (outcomes, intervals, tests), ``spec`` (``SearchSpec``, the options of a
search), ``modes`` (the mode registry, one file per mode), ``alphabet`` (the coarse
search alphabet exact mode and motifs match by default), ``similar``, ``motifs``,
``plot``. No torch is
imported unless the ``model`` or ``learned`` mode is used.
"""

from candletok.search.index import SearchIndex, open_index
from candletok.search.modes import SearchMode, get_mode, modes, register_mode
from candletok.search.motifs import MotifResult, motifs
from candletok.search.similar import SimilarResult, similar
from candletok.search.spec import SearchSpec
from candletok.search.vectors import BaseIndex, FaissIndex, NumpyFlatIndex

__all__ = ["BaseIndex", "FaissIndex", "MotifResult", "NumpyFlatIndex", "SearchIndex",
           "SearchMode", "SearchSpec", "SimilarResult", "get_mode", "modes", "motifs",
           "open_index", "register_mode", "similar"]
