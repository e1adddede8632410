"""Engines that map the per-group encode of dataset.build over many machines: takes a
BuildConfig, gives the same dataset folder as the local build, byte for byte."""
