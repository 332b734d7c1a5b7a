"""The order of the work: fit (the one pipeline every fit goes through), rank, compare, distance, demo."""
