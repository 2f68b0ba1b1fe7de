"""Print the NPY_DISABLE_CPU_FEATURES values of CI's second pass, one line each, widest kernels first.

numpy picks its sort / partition / math kernels by the CPU's dispatch groups (X86_V4 = AVX-512,
X86_V3 = AVX2 on numpy 2.4); tied items come out in an order that depends on them. Each line switches
off the groups this machine has above a level, so an AVX-512 machine also runs the AVX2 path and
both run the baseline (SSE) path. Only groups the machine has are named.
"""

from numpy._core import _multiarray_umath as umath

FOUND = [name for name in umath.__cpu_dispatch__ if umath.__cpu_features__.get(name)]
ABOVE_V3 = [name for name in FOUND if name not in ("X86_V2", "X86_V3")]
passes = []
if ABOVE_V3:
    passes.append(ABOVE_V3)                     # AVX-512 off: the AVX2 path
if "X86_V3" in FOUND:
    passes.append(ABOVE_V3 + ["X86_V3"])        # AVX2 off too: the baseline path
for groups in passes:
    print(" ".join(groups))
