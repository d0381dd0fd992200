"""Calibration: the literature data as PEtab problems (:mod:`.petab_problem`) and their estimation with pyPESTO
on libroadrunner (:mod:`.fit`)."""
