"""What the commands show of runs and sweeps: the compare table and its groups, the runs listing, the end of a
sweep, the report page and the comparison of two runs. Library code over the records; no command, no launch."""
