"""Worker programs that tests run as real subprocesses (and kill with SIGKILL)."""
