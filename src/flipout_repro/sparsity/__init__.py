"""Which weights a network keeps: masks, layer budgets, patterns and pruning schedules."""
