"""biaslab: audit image classifiers for shortcut learning and group unfairness."""
