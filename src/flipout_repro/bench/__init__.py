"""Speed: training steps, a run's start-up, sparse inference."""
