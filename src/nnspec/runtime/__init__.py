"""The runtime: generated Numba functions for inference and training, weights, training library.

``numba_config`` is imported first, before anything loads Numba (and with it SciPy's BLAS), so
that the thread policy it sets applies.
"""

from . import numba_config  # noqa: F401  (must run before Numba is imported)
