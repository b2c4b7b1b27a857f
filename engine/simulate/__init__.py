"""The survey simulator: CSC-like per-detection catalogues with hidden ground truth (``true_class``).

See :mod:`xsift.simulate.simulator` for how every number is calibrated on the real data.
"""
from xsift.simulate.simulator import (CALIBRATION_PATH, COLUMNS, ERROR_COLUMNS, ERROR_FEATURES,  # noqa: F401
                                      FEATURE_SPACES, columns, from_unbounded, load_calibration,
                                      load_error_calibration, simulate_block, simulate_catalog, to_unbounded,
                                      write_simulated_catalog)
