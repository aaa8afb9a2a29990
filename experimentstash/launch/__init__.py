"""The launch engine: planning a job, the sweep core, running and supervising one job's processes, and the
glue to Hydra. Above the backends, which it drives through backends/base.py."""
