"""The worker and what it runs: partition tasks, state restore, coalescing, fair queues, the
call budget, dead letters, and the scheduler."""
