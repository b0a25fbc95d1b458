"""Throughput benchmarks of the cases against the memory-bandwidth limit.

``matrix`` (what is benchmarked, with stable ids), ``workload`` (realistic inputs, compiled-function cache,
the timed callable), ``bandwidth`` (copy bandwidth of a device, the bytes-moved model, throughput figures),
``runs`` (reading saved pytest-benchmark runs), ``compare`` (the bandwidth-fraction regression gate) and
``summary`` (``python -m suite bench-report``: Markdown table and PNG plot of a run).
"""
