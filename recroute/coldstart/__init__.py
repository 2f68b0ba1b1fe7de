"""Cold start: routers facing prompts of tasks never seen in training (leave-one-task-out)."""
