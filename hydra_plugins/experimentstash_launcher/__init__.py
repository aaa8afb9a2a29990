"""Hydra launcher and sweeper of experimentstash: each job runs the pinned tool as its own subprocess."""
