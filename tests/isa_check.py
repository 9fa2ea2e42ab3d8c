"""Run by test_cpu.py in a subprocess with EDGEPACK_ISA set: checks that dispatch picked the
requested level and that every quant kernel (per tensor, per channel on the first and last
axis, dequantize, dynamic) matches the numpy spec at 1 and 2 threads. Exit status 0 = pass."""

from __future__ import annotations

import os
import sys

import numpy as np

import edgepack as ep
import quant_ref as ref


def main() -> int:
    want = os.environ.get("EDGEPACK_ISA", "")
    info = ep.cpu_info()
    if want and info["isa"] != want:
        print(f"selected ISA {info['isa']!r}, wanted {want!r}")
        return 1
    rng = np.random.default_rng(1)
    special = np.array([0.0, -0.0, 1e-40, 0.5, -0.5, 2.5, 127.5, -128.5, 255.5, 3e9, -3e9,
                        np.inf, -np.inf], np.float32)
    bad = 0
    for threads in (1, 2):
        ep.set_num_threads(threads)
        for n in [0, 1, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 129, 1023, 70_001]:
            x = (rng.standard_normal(n) * 40).astype(np.float32)
            x[::7] = np.resize(special, x[::7].size)
            for dtype, zps in (("int8", (0, -128, 5, 127)), ("uint8", (0, 128, 255))):
                for zp in zps:
                    q = ep.quantize(x, 0.25, zp, dtype=dtype)
                    bad += not np.array_equal(q, ref.quantize(x, 0.25, zp, dtype=dtype))
                    bad += not ref.same_bits(ep.dequantize(q, 0.25, zp),
                                             ref.dequantize(q, 0.25, zp))
                if n % 2 == 1 and n > 2:
                    m = x.reshape(n // n, n) if n < 64 else x[: (n // 3) * 3].reshape(3, -1)
                    for axis in (0, -1):
                        c = m.shape[axis]
                        s = rng.uniform(0.05, 2, c).astype(np.float32)
                        z = rng.integers(*ref.RANGES[dtype], c, endpoint=True).astype(np.int32)
                        qa = ep.quantize(m, s, z, axis=axis, dtype=dtype)
                        bad += not np.array_equal(qa, ref.quantize(m, s, z, axis % 2, dtype))
                        bad += not ref.same_bits(ep.dequantize(qa, s, z, axis=axis),
                                                 ref.dequantize(qa, s, z, axis % 2))
                fin = x[np.isfinite(x)]
                if fin.size:
                    qd, sd, zd = ep.quantize_dynamic(fin, dtype=dtype)
                    bad += (sd, zd) != ref.qparams(fin.min(), fin.max(), dtype, dtype == "int8")
                    bad += not np.array_equal(qd, ref.quantize(fin, sd, zd, dtype=dtype))
            if bad:
                print(f"mismatch at n={n} threads={threads} isa={info['isa']}")
                return 1
    print(f"ok isa={info['isa']} kernels={info['kernels']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
