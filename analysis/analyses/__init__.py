"""Analyses: readouts, local and global sensitivity, dose-response and scans, validation, robustness."""
