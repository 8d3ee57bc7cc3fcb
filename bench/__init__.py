"""Benchmarks of the write path, the read path and the footprint, beside the original approach.

Each module is runnable (`python -m bench.write_path --help`) and importable (`main(argv)`).
"""
