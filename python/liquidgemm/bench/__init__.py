"""`liquidgemm bench`: liquidgemm's W4A8 GEMM side by side with cuBLAS, torch int8/fp8 and CUTLASS mixed-input
GEMMs, timed on the GPU (`liquidgemm.timing`), with tables, JSON/CSV and plots. See bench/README.md.

Pieces: `peers` (what is compared), `runner` (one point per problem x M x peer), `report` (tables, JSON, CSV),
`plot` (PNGs), `__main__` (the command line).
"""
from .peers import PEERS, Peer, make_peers
from .runner import Point, Problem, Roofline, run_problems

__all__ = ["PEERS", "Peer", "Point", "Problem", "Roofline", "make_peers", "run_problems"]
