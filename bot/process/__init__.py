"""What one process needs: its database lock, log redaction, the CPU thread, event-loop tuning."""
