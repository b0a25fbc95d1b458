"""Where the suite's inputs come from: thresholds, deterministic grids and Hypothesis strategies."""
