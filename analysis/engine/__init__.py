"""Engine: many simulations at once (Dask ensembles), trustworthy results folders, virtual populations."""
