"""verl.plugins entry point for verl-frontier."""
