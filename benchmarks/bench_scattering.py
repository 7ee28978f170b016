"""Benchmark: 1-D azimuthal integration of Pilatus 2M frames (1679 x 1475), spotkit vs pyFAI.

Frames per second of spotkit's lazy series reduction (``integrate_frames`` on a dask array,
computed) against pyFAI's steady ``integrate1d(method="csr")`` called directly on the same
frames and geometry (the reference, measured in the same run), and of ``integrate2d`` cakes
(500 x 360). The first call of each, which builds pyFAI's lookup table (~1 s), is timed
apart.

    python benchmarks/bench_scattering.py [--frames 20] [--record]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

SHAPE = (1679, 1475)
NPT = 1000


def _frames(n: int, ai) -> np.ndarray:
    rng = np.random.default_rng(0)
    q = ai.qArray(SHAPE)
    lam = 2000.0 / (1.0 + (q * 5.0) ** 2) + 2.0
    frames = rng.poisson(lam, size=(n, *SHAPE)).astype(np.int32)
    frames[:, 195::212, :] = -1  # Pilatus-like horizontal gaps
    frames[:, :, 487::494] = -1
    return frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20, help="frames per measurement")
    parser.add_argument("--record", action="store_true", help="write benchmarks/RESULTS.md")
    args = parser.parse_args()

    import dask.array as da
    import pyFAI

    from spotkit.scattering import integrate_2d, integrate_frames, make_geometry

    ai_ref = make_geometry(energy_kev=12.0, distance_m=2.0, beam_center=(1200.0, 740.0),
                           pixel_size_um=172, shape=SHAPE)
    frames = _frames(args.frames, ai_ref)
    mask = frames[0] < 0

    t0 = time.perf_counter()
    ai_ref.integrate1d(frames[0], NPT, unit="q_nm^-1", method="csr", mask=mask,
                       error_model="poisson")
    first_ref = time.perf_counter() - t0
    t0 = time.perf_counter()
    for frame in frames:
        ai_ref.integrate1d(frame, NPT, unit="q_nm^-1", method="csr", mask=mask,
                           error_model="poisson")
    fps_ref = len(frames) / (time.perf_counter() - t0)

    ai = make_geometry(energy_kev=12.0, distance_m=2.0, beam_center=(1200.0, 740.0),
                       pixel_size_um=172, shape=SHAPE)
    lazy = da.from_array(frames, chunks=(1, *SHAPE))
    t0 = time.perf_counter()
    iq = integrate_frames(lazy, ai, npt=NPT, mask=mask)  # builds the lookup table once
    build = time.perf_counter() - t0
    t0 = time.perf_counter()
    iq.compute()
    fps_sk = len(frames) / (time.perf_counter() - t0)

    integrate_2d(frames[0], ai, npt_rad=500, npt_azim=360, mask=mask)  # build the 2-D table
    n2 = min(len(frames), 10)
    t0 = time.perf_counter()
    for frame in frames[:n2]:
        integrate_2d(frame, ai, npt_rad=500, npt_azim=360, mask=mask)
    fps_cake = n2 / (time.perf_counter() - t0)

    from _results import machine_line

    text = (
        "## Scattering: 1-D integration of Pilatus 2M frames (bench_scattering.py)\n\n"
        f"{machine_line()}\n\npyFAI "
        f"{pyFAI.version}, {len(frames)} frames of {SHAPE[0]} x {SHAPE[1]} int32, "
        f"{NPT} q bins, Poisson errors, CSR method.\n\n"
        "| what | frames/s | ms/frame |\n|---|---:|---:|\n"
        f"| pyFAI `integrate1d(method=\"csr\")`, steady (reference) | {fps_ref:.1f} | "
        f"{1e3 / fps_ref:.0f} |\n"
        f"| spotkit `integrate_frames` (dask, computed) | {fps_sk:.1f} | {1e3 / fps_sk:.0f} |\n"
        f"| spotkit `integrate_2d` cake 500 x 360 | {fps_cake:.1f} | {1e3 / fps_cake:.0f} |\n\n"
        f"spotkit / pyFAI: {fps_sk / fps_ref:.2f}. First pyFAI call (builds the lookup table): "
        f"{first_ref:.2f} s; `integrate_frames` graph construction (same table, built once): "
        f"{build:.2f} s.\n"
    )
    print(text)
    if args.record:
        from _results import write_section

        write_section("## Scattering: 1-D integration", text)


if __name__ == "__main__":
    main()
