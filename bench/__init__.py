"""Dockyard against Distribution 2.8, side by side on loopback.

`python -m bench` starts both registries on local filesystem storage, runs the
same workloads against each, prints one table with both figures and their
ratio, and writes the results as JSON. `--quick` runs tiny sizes only to show
that the benchmark still works; its numbers mean nothing.
"""
