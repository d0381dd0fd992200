"""Command line ``ketamine-cascade``: argparse front ends only (parse, call the package, print)."""

from analysis.cli.commands import main

__all__ = ["main"]
