"""verl.plugins entry point for the CPU platform (filled in by verl_cpu)."""
