"""Exit 1 unless every group named in NPY_DISABLE_CPU_FEATURES is switched off in this numpy."""

import os
import sys

from numpy._core import _multiarray_umath as umath

named = os.environ.get("NPY_DISABLE_CPU_FEATURES", "").split()
still_on = [name for name in named if umath.__cpu_features__.get(name)]
if still_on:
    sys.exit(f"CI: numpy still dispatches {still_on} although NPY_DISABLE_CPU_FEATURES names them")
print(f"numpy dispatch groups off: {named}; on: {[g for g in umath.__cpu_dispatch__ if umath.__cpu_features__.get(g)]}")
